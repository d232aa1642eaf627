/* A minimal `lua5.1 script.lua args...` host, built by `make bench` from Lua 5.1.5's own sources
 * (the lua-src crate in Cargo's registry) with symbols, only so that callgrind can name the Lua
 * VM's functions in the per-function profiles. Debian's lua5.1 is stripped. The figures in the
 * tables always come from Debian's lua5.1. */
#include <stdio.h>
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [args...]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  /* As lua.c: arg[-1] the interpreter, arg[0] the script, arg[1..] its arguments. */
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  int rc = 0;
  if (luaL_dofile(L, argv[1])) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    rc = 1;
  }
  lua_close(L);
  return rc;
}
