/*
 * getrandom (0.4.x) "custom" backend for the Vera build
 * (RUSTFLAGS --cfg getrandom_backend="custom"): uClibc has no getrandom()
 * and old Vera kernels have no getrandom(2). Try the syscall, fall back to
 * /dev/urandom on ENOSYS.
 *
 * Rust side:  extern "Rust" fn __getrandom_v03_custom(dest: *mut u8, len: usize)
 *                 -> Result<(), getrandom::Error>
 * getrandom::Error is a NonZeroI32 newtype, so Result<(), Error> is a single
 * i32 returned in a register: 0 = Ok, a negative errno = Err. verify.sh
 * exercises this path (WebSocket masking keys, rustls) under qemu.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GETRANDOM_UNEXPECTED ((1 << 16) + 2)

static int urandom_fill(uint8_t *dest, size_t len)
{
    int fd;
    do {
        fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return errno > 0 ? -errno : GETRANDOM_UNEXPECTED;
    while (len > 0) {
        ssize_t n = read(fd, dest, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            return e > 0 ? -e : GETRANDOM_UNEXPECTED;
        }
        if (n == 0) {
            close(fd);
            return GETRANDOM_UNEXPECTED;
        }
        dest += n;
        len -= (size_t)n;
    }
    close(fd);
    return 0;
}

__attribute__((visibility("hidden")))
int32_t __getrandom_v03_custom(uint8_t *dest, size_t len)
{
#ifdef SYS_getrandom
    static volatile int no_syscall;
    if (!no_syscall) {
        while (len > 0) {
            long n = syscall(SYS_getrandom, dest, len, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == ENOSYS || errno == EPERM) {
                    no_syscall = 1;
                    break;
                }
                return errno > 0 ? -errno : GETRANDOM_UNEXPECTED;
            }
            dest += n;
            len -= (size_t)n;
        }
        if (len == 0)
            return 0;
    }
#endif
    return urandom_fill(dest, len);
}
