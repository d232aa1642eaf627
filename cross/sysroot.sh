#!/usr/bin/env bash
# cross/sysroot.sh TARGET — make the Debian sysroot for a glibc TARGET:
# libc6(-dev), libgcc, and lua5.1 of the target architecture, fetched with a
# private apt configuration under cross/work/apt (nothing is installed
# system-wide, no dpkg --add-architecture) and unpacked with dpkg -x.
# The same sysroot is used to link (gcc --sysroot) and to run (qemu -L), so the
# module is verified against the oldest glibc it is linked for.
source "$(dirname "$0")/lib.sh"
target_vars "$1"
[ "$LIBC" = glibc ] || { echo "sysroot.sh is for glibc targets; use cross/uclibc.sh" >&2; exit 2; }

stamp="$SYSROOT/.complete"
if [ -f "$stamp" ]; then log "sysroot $SYSROOT exists"; exit 0; fi

A="$WORK/apt-$DEB_ARCH-$SUITE"
mkdir -p "$A"/{state/lists/partial,cache/archives/partial,debs,parts}
touch "$A/status"
echo "deb [arch=$DEB_ARCH] $MIRROR $SUITE main" > "$A/sources.list"
APT=(apt-get -q
  -o "Dir::Etc::SourceList=$A/sources.list" -o "Dir::Etc::SourceParts=$A/parts"
  -o "Dir::Etc::Preferences=$A/parts" -o "Dir::Etc::PreferencesParts=$A/parts"
  -o "Dir::State=$A/state" -o "Dir::State::status=$A/status" -o "Dir::Cache=$A/cache"
  -o "APT::Architecture=$DEB_ARCH" -o "APT::Architectures::=$DEB_ARCH"
  -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
log "apt update ($SUITE/$DEB_ARCH, private)"
"${APT[@]}" update >/dev/null
PKGS="libc6 libc6-dev linux-libc-dev libgcc-s1 lua5.1 liblua5.1-0 liblua5.1-0-dev libreadline8 libtinfo6 readline-common libcrypt1 libcrypt-dev"
log "download: $PKGS"
(cd "$A/debs" && "${APT[@]}" download $PKGS >/dev/null)
rm -rf "$SYSROOT"; mkdir -p "$SYSROOT"
for d in "$A"/debs/*.deb; do dpkg -x "$d" "$SYSROOT"; done
# Absolute symlinks (e.g. usr/lib/<triple>/libc.so -> /lib/...) would point at
# the host; make them relative to the sysroot.
find "$SYSROOT" -type l | while read -r l; do
  t="$(readlink "$l")"
  case "$t" in /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$SYSROOT$t")" "$l";; esac
done
touch "$stamp"
log "sysroot ready: $SYSROOT ($(dpkg-deb -f "$A"/debs/libc6_*.deb Version) glibc)"
