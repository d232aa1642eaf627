#!/usr/bin/env bash
# Runs a cargo command (clippy, test) on the Lua 5.1 module once per TLS backend of the table
# in tools/lib.sh, each in the target dir that backend's module builds in, and once with a
# vendored Lua (so that `cargo test` also runs tests/lua_api.rs through a real Lua VM).
#   tools/cargo-each.sh test
#   tools/cargo-each.sh clippy --all-targets -- -D warnings
# For `test`, records the sum of cargo's "test result:" lines as the stage's count.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LUWS_ROOT" || exit 2
cmd=${1:?usage: tools/cargo-each.sh COMMAND [ARGS...]}
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
run() { # TARGET_DIR FEATURES [ARGS...]
  local target=$1 features=$2
  shift 2
  echo "== cargo $cmd --features $features (target dir ${target#"$LUWS_ROOT"/})"
  CARGO_TARGET_DIR=$target cargo "$cmd" --no-default-features --features "$features" "$@" 2>&1 |
    tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}
for b in $TLS_BACKENDS; do
  module_dirs lua51 "$b"
  run "$MODULE_TARGET" "lua51,$(tls_features "$b")" "$@"
done
run "$LUWS_ROOT/target/vendored" lua51,vendored,tls-native "$@"
if [ "$cmd" = test ]; then
  read -r p f < <(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log" |
    awk '{ p += $1; f += $2 } END { print p + 0, f + 0 }')
  result "$p" "$f" "cargo test"
fi
exit "$status"
