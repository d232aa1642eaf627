/*
 * Linked into the glibc builds (cross/build.sh) to keep the glibc floor at
 * 2.28 (Raspberry Pi OS buster) while linking against bullseye's 2.31.
 *
 * Rust's std references gettid() weakly and falls back when it is missing,
 * but the link against glibc 2.31 records a hard GLIBC_2.30 version need,
 * which ld.so on glibc 2.28 refuses. This hidden definition satisfies the
 * reference inside the module, so no GLIBC_2.30 need is recorded.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

__attribute__((visibility("hidden"))) pid_t gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}
