#!/usr/bin/env bash
# Copies a built module to where Lua finds it as luws.so, atomically: overwriting a loaded
# shared object in place crashes the processes that have it mapped.
# Usage: tools/install-module.sh SRC.so DEST_DIR
set -euo pipefail
mkdir -p "$2"
cp "$1" "$2/.luws.so.$$"
mv -f "$2/.luws.so.$$" "$2/luws.so"
