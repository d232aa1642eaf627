# luws: build, demo and tests. `make demo` is the main job; `make test` runs every test.
#   make demo    build the module and run lua/examples/echo.lua against a local echo server
#   make test    install what tests need, then every stage (tools/test-all.sh)
#   make module  build target/release/libluws.so and install it as target/lua51/luws.so
#   make spec    the busted suite on Lua 5.1 (native-tls build); spec-rustls: the rustls build
# The Lua versions and TLS backends are the tables in tools/lib.sh.

.PHONY: demo test deps lint unit module spec autobahn leaks leaks-long \
	cross-fast cross-all matrix luarocks dist

demo:
	bash tools/install-deps.sh --demo
	bash -c '. tools/lib.sh && module lua51 native'
	tools/demo.sh

test:
	tools/test-all.sh

deps:
	bash tools/install-deps.sh

# Import cycles, formatting, and clippy for every TLS backend and the vendored-Lua build.
lint:
	python3 tools/import_cycles.py
	cargo fmt --all -- --check
	tools/cargo-each.sh clippy --all-targets -- -D warnings

# Rust unit tests for every TLS backend, and tests/lua_api.rs against a vendored Lua.
unit:
	tools/cargo-each.sh test

module:
	bash -c '. tools/lib.sh && module lua51 native'

# spec-native (= spec), spec-rustls: the busted suite on Lua 5.1 against that TLS backend.
spec: spec-native
spec-%:
	tools/spec.sh --module lua51 $*

autobahn: module
	bash spec/autobahn/run.sh

# fds, RSS and valgrind over 10,000 open/close cycles (about a minute); leaks-long: ~10 min.
leaks: module
	tools/leaks.sh

leaks-long: module
	tools/leaks.sh --long

# Cross builds verified under qemu: the CI subset (aarch64 + Vera), and every target.
cross-fast:
	cross/all.sh --fast

cross-all:
	cross/all.sh

# The busted suite on every Lua version of the table but 5.1 (native-tls), which is the spec
# stage's run; `tools/matrix.sh` alone runs every version. Two suites run at once (they mostly
# wait); the 50 ms host-stall bounds run afterwards, one version at a time, with nothing beside.
matrix:
	MATRIX_SKIP=lua51 MATRIX_SERIAL=spec/host_stall_spec.lua tools/matrix.sh

# `luarocks make` for each Lua version into a local tree, then `require "luws"` from it.
luarocks:
	tools/luarocks.sh

# Release archives for Luup users (host build plus every cross build present).
dist: module
	tools/dist.sh

# Benchmarks: luws from Lua 5.1 against a pure-Rust tungstenite client (the
# ceiling) and a minimal C Lua module (the floor), and the same under LuaJIT. See bench/.
#   make bench        the full run; writes bench/results.md
#   make bench-smoke  small counts, < 60 s, fails only if something does not run (for CI)
#   make bench-json   only the 2 MB JSON row (with and without permessage-deflate), full counts;
#                     writes bench/target/results-json.md

BENCH_TARGET := $(CURDIR)/bench/target
LUWS_SO      := target/release/libluws.so
# Lua 5.1.5's sources as the lua-src crate ships them (for a Lua host with symbols; optional).
LUA51_SRC    := $(firstword $(wildcard $(or $(CARGO_HOME),$(HOME)/.cargo)/registry/src/*/lua-src-*/lua-5.1.5))

# luws built for LuaJIT, in a target dir of its own (only `make bench` builds it).
LUWS_JIT_TARGET := $(BENCH_TARGET)/luws-luajit
FLOOR_CFLAGS := -std=c99 -Wall -Wextra -O2 -fPIC -shared

# The module as `require "luws"` finds it, the C floor as luws.so against Lua 5.1's and
# LuaJIT's headers (LuaJIT's only when they are there), and the bench crate (own lock, own
# target dir).
define bench_prepare
	test -f $(LUWS_SO) || cargo build --release
	mkdir -p $(BENCH_TARGET)/lua51 $(BENCH_TARGET)/floor51 $(BENCH_TARGET)/floor-jit
	cp $(LUWS_SO) $(BENCH_TARGET)/lua51/luws.so
	cc $(FLOOR_CFLAGS) -I/usr/include/lua5.1 -o $(BENCH_TARGET)/floor51/luws.so bench/floor/luws_floor.c
	if test -f /usr/include/luajit-2.1/lua.h; then \
	  cc $(FLOOR_CFLAGS) -I/usr/include/luajit-2.1 -o $(BENCH_TARGET)/floor-jit/luws.so bench/floor/luws_floor.c; \
	else rm -f $(BENCH_TARGET)/floor-jit/luws.so; fi
	CARGO_TARGET_DIR=$(BENCH_TARGET) cargo build --release --manifest-path bench/Cargo.toml
endef
BENCH_FLOORS := --floor-dir $(BENCH_TARGET)/floor51 --floor-jit-dir $(BENCH_TARGET)/floor-jit

.PHONY: bench bench-smoke bench-json

bench:
	bash -c '. tools/lib.sh && apt_need valgrind strace luajit liblua5.1-0-dev libluajit-5.1-dev'
	$(bench_prepare)
	CARGO_TARGET_DIR=$(LUWS_JIT_TARGET) cargo build --release --no-default-features --features luajit,module,tls-native
	mkdir -p $(BENCH_TARGET)/luajit
	cp $(LUWS_JIT_TARGET)/release/libluws.so $(BENCH_TARGET)/luajit/luws.so
	# The same code unstripped, only so callgrind can name luws's functions.
	CARGO_TARGET_DIR=$(BENCH_TARGET)/luws-sym CARGO_PROFILE_RELEASE_STRIP=none cargo build --release
	mkdir -p $(BENCH_TARGET)/lua51-sym
	cp $(BENCH_TARGET)/luws-sym/release/libluws.so $(BENCH_TARGET)/lua51-sym/luws.so
	# And Lua 5.1.5 with symbols, when its sources are in Cargo's registry (else: addresses).
	@echo "lua-host: $(or $(LUA51_SRC),no Lua 5.1.5 sources found)"
	@$(if $(LUA51_SRC),cc -O2 -g -DLUA_USE_POSIX -DLUA_USE_DLOPEN -I$(LUA51_SRC) -rdynamic \
	  -o $(BENCH_TARGET)/lua51-sym/lua5.1 bench/lua-host.c \
	  $(filter-out %/luac.c %/print.c %/lua.c,$(wildcard $(LUA51_SRC)/*.c)) -lm -ldl,\
	  rm -f $(BENCH_TARGET)/lua51-sym/lua5.1)
	$(BENCH_TARGET)/release/luws-bench run --lua-dir $(BENCH_TARGET)/lua51 \
	  --sym-lua-dir $(BENCH_TARGET)/lua51-sym $(BENCH_FLOORS) --jit-dir $(BENCH_TARGET)/luajit \
	  --out bench/results.md

# The floor runs here too (tiny counts), so it cannot rot; luws for LuaJIT only if built already.
bench-smoke:
	$(bench_prepare)
	$(BENCH_TARGET)/release/luws-bench run --smoke --lua-dir $(BENCH_TARGET)/lua51 \
	  $(BENCH_FLOORS) --jit-dir $(BENCH_TARGET)/luajit --out $(BENCH_TARGET)/results-smoke.md

# The large-JSON row alone; its profile too when `make bench` has built the symbol build.
bench-json:
	bash -c '. tools/lib.sh && apt_need valgrind strace liblua5.1-0-dev'
	$(bench_prepare)
	$(BENCH_TARGET)/release/luws-bench run --only json --lua-dir $(BENCH_TARGET)/lua51 \
	  --sym-lua-dir $(BENCH_TARGET)/lua51-sym --out $(BENCH_TARGET)/results-json.md
