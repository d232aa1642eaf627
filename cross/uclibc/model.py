#!/usr/bin/env python3
"""cross/uclibc/model.py UCLIBC_BUILD_DIR SYSROOT

uClibc-ng 1.0.35 folds libpthread, librt, libm and libdl into libc.so, but the
Vera boxes run uClibc 0.9.33, where they are separate libraries. This script
rebuilds that split from the uClibc-ng build tree (which object came from
which library) so that the module is linked and checked as on a box:

  SYSROOT/vera-model/<soname>.syms  the symbols each 0.9.33-style library
                                    defines (cross/symcheck.py --model)
  SYSROOT/linkstubs/lib<x>.so       link-time stubs with those symbols and
                                    soname <x>.so.0, searched first by
                                    cross/build.sh, so DT_NEEDED entries come
                                    out as on a box (libpthread.so.0, ...)
  SYSROOT/lib/lib<x>.so.0           empty run-time libraries with those
                                    sonames (qemu resolves the symbols in the
                                    merged libc.so.0)
"""
import os, subprocess, sys

GROUPS = {
    "libpthread.so.0": ["libpthread/nptl"],
    "librt.so.0": ["librt"],
    "libm.so.0": ["libm"],
    "libdl.so.0": ["ldso/libdl"],
    "libcrypt.so.0": ["libcrypt"],
}
CC = "mipsel-linux-gnu-gcc"
FLAGS = ["-msoft-float", "-march=mips32r2", "-mno-dsp"]


def nm(paths):
    syms = {}
    for i in range(0, len(paths), 200):
        out = subprocess.run(["mipsel-linux-gnu-nm", "-g", "-S", "--defined-only"] + paths[i:i + 200],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            f = line.split()
            if len(f) == 4:
                size, typ, name = int(f[1], 16), f[2], f[3]
            elif len(f) == 3:
                size, typ, name = 0, f[1], f[2]
            else:
                continue
            syms[name] = (typ, size)
    return syms


def main():
    build, sysroot = sys.argv[1], sys.argv[2]
    model, stubs, libdir = (os.path.join(sysroot, d) for d in ("vera-model", "linkstubs", "lib"))
    for d in (model, stubs):
        os.makedirs(d, exist_ok=True)
    out = subprocess.run(["mipsel-linux-gnu-readelf", "--dyn-syms", "-W", os.path.join(build, "lib/libuClibc-1.0.35.so")],
                         capture_output=True, text=True, check=True).stdout
    merged = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0].rstrip(":").isdigit() and f[6] != "UND" and f[4] in ("GLOBAL", "WEAK"):
            merged.add(f[7].split("@")[0])
    taken = set()
    for soname, dirs in GROUPS.items():
        objs = []
        for d in dirs:
            for root, _, files in os.walk(os.path.join(build, d)):
                if "nptl_db" in root:
                    continue
                objs += [os.path.join(root, f) for f in files if f.endswith((".os", ".oS"))]
        syms = {n: v for n, v in nm(sorted(objs)).items() if n in merged} if objs else {}
        taken |= set(syms)
        with open(os.path.join(model, soname + ".syms"), "w") as fh:
            fh.write("\n".join(sorted(syms)) + "\n")
        src = os.path.join(stubs, soname + ".c")
        with open(src, "w") as fh:
            for n, (typ, size) in sorted(syms.items()):
                if typ in "TtWwi":
                    fh.write("void %s(void) {}\n" % n)
                elif typ in "DdBbRrVvGgSs":
                    fh.write("char %s[%d];\n" % (n, max(size, 1)))
        base = soname.split(".so")[0]
        subprocess.run([CC] + FLAGS + ["-w", "-fno-builtin", "-shared", "-nostdlib", "-fPIC", "-Wl,-soname," + soname,
                        "-o", os.path.join(stubs, base + ".so"), src], check=True)
        empty = os.path.join(stubs, "empty.c")
        open(empty, "w").write("/* run-time stand-in: symbols live in the merged libc.so.0 */\n")
        subprocess.run([CC] + FLAGS + ["-shared", "-nostdlib", "-fPIC", "-Wl,-soname," + soname,
                        "-o", os.path.join(libdir, soname), empty], check=True)
        print("%-16s %4d symbols" % (soname, len(syms)))
    libc = sorted(merged - taken)
    with open(os.path.join(model, "libc.so.0.syms"), "w") as fh:
        fh.write("\n".join(libc) + "\n")
    print("%-16s %4d symbols" % ("libc.so.0", len(libc)))


if __name__ == "__main__":
    main()
