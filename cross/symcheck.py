#!/usr/bin/env python3
"""cross/symcheck.py MODULE --sysroot DIR --lua PROVIDER [--floor 2.28] [--libc glibc|uclibc]

Static checks of a cross-built Lua module against the target userland:
  * every DT_NEEDED library exists in the sysroot and is an allowed system
    library (libc, libpthread, libdl, libm, librt, libgcc_s);
  * every undefined, non-weak dynamic symbol is defined by one of the needed
    libraries or by the Lua provider (liblua5.1.so.0 or the lua executable);
  * glibc: no GLIBC_x.y version need above the floor.
Prints a summary; exit status 1 on any problem.
"""
import argparse, os, re, subprocess, sys

ALLOWED = re.compile(r"^(libc\.so\.[06]|libpthread\.so\.0|libdl\.so\.[02]|libm\.so\.[06]|librt\.so\.[01]|libgcc_s\.so\.1|ld-.*|ld\.so\.1)$")


def dynsyms(readelf, path):
    out = subprocess.run([readelf, "--dyn-syms", "-W", path], capture_output=True, text=True, check=True).stdout
    defined, undef = {}, []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 8 or not f[0].rstrip(":").isdigit():
            continue
        bind, ndx, name = f[4], f[6], f[7]
        base, _, ver = name.partition("@")
        ver = ver.lstrip("@")
        if ndx == "UND":
            if base:
                undef.append((base, ver, bind))
        elif bind in ("GLOBAL", "WEAK") and base:
            defined.setdefault(base, set()).add(ver)
    return defined, undef


def needed(readelf, path):
    out = subprocess.run([readelf, "-d", "-W", path], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def find_lib(sysroot, name):
    for d in ("lib", "usr/lib"):
        base = os.path.join(sysroot, d)
        for root, _, files in os.walk(base):
            if name in files:
                return os.path.realpath(os.path.join(root, name))
    return None


def vkey(v):
    return tuple(int(x) for x in v.split("."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("module")
    ap.add_argument("--sysroot", required=True)
    ap.add_argument("--lua", required=True, help="library/executable that provides the Lua C API")
    ap.add_argument("--floor", default="")
    ap.add_argument("--readelf", default="readelf")
    ap.add_argument("--model", default="", help="dir of <soname>.syms symbol lists that override the sysroot's libraries")
    a = ap.parse_args()
    problems = []
    libs = needed(a.readelf, a.module)
    providers = {}
    for lib in libs:
        if not ALLOWED.match(lib):
            problems.append("needs a non-system library: " + lib)
        m = os.path.join(a.model, lib + ".syms") if a.model else ""
        if m and os.path.exists(m):
            providers[lib] = {n: {""} for n in open(m).read().split()}
            continue
        p = find_lib(a.sysroot, lib)
        if p is None:
            problems.append("needed library not in the target userland: " + lib)
        else:
            providers[lib] = dynsyms(a.readelf, p)[0]
    providers["(lua)"] = dynsyms(a.readelf, a.lua)[0]
    _, undef = dynsyms(a.readelf, a.module)
    by_lib, weak_missing, glibc_versions = {}, [], set()
    for name, ver, bind in undef:
        m = re.match(r"GLIBC_(\d+(?:\.\d+)+)", ver)
        if m:
            glibc_versions.add(m.group(1))
        hit = [lib for lib, syms in providers.items() if name in syms and (not ver or ver in syms[name] or not syms[name] - {""})]
        if hit:
            by_lib.setdefault(hit[0], []).append(name)
        elif bind == "WEAK":
            weak_missing.append(name)
        else:
            problems.append("undefined symbol %s%s provided by nothing the module loads with" % (name, "@" + ver if ver else ""))
    if a.floor:
        over = sorted((v for v in glibc_versions if vkey(v) > vkey(a.floor)), key=vkey)
        if over:
            users = [n + "@" + v for n, v, _ in undef if v.startswith("GLIBC_") and v[6:] in over]
            problems.append("glibc versions above the %s floor: %s (%s)" % (a.floor, ", ".join(over), ", ".join(users)))
    print("NEEDED: " + " ".join(libs))
    print("undefined symbols: %d resolved (%s)%s" % (
        sum(len(v) for v in by_lib.values()),
        ", ".join("%s %d" % (k, len(v)) for k, v in sorted(by_lib.items())),
        "; weak, absent here: " + " ".join(sorted(weak_missing)) if weak_missing else ""))
    if glibc_versions:
        print("glibc version needs: max GLIBC_%s (floor %s)" % (max(glibc_versions, key=vkey), a.floor or "-"))
    for p in problems:
        print("PROBLEM: " + p)
    print("symcheck: %s" % ("ok" if not problems else "FAILED"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
