/*
 * Minimal stand-alone Lua 5.1 interpreter for the uClibc test userland
 * (lua-src ships the library but not lua.c). Usage: lua SCRIPT [ARGS...]
 * or lua -e CHUNK. Sets the global `arg` like the real interpreter.
 * Linked with -Wl,-E so C modules loaded with require() find the Lua API.
 */
#include <stdio.h>
#include <stdlib.h>
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

static int report(lua_State *L, int status)
{
    if (status != 0) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "lua: %s\n", msg ? msg : "(error object is not a string)");
        lua_pop(L, 1);
    }
    return status;
}

static int traceback(lua_State *L)
{
    lua_getfield(L, LUA_GLOBALSINDEX, "debug");
    lua_getfield(L, -1, "traceback");
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
    return 1;
}

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    int status, i, base;
    if (L == NULL || argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT [ARGS...] | -e CHUNK\n", argv[0]);
        return 2;
    }
    luaL_openlibs(L);
    lua_createtable(L, argc, 0);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - 1);
    }
    lua_setglobal(L, "arg");
    lua_pushcfunction(L, traceback);
    base = lua_gettop(L);
    if (argv[1][0] == '-' && argv[1][1] == 'e' && argc > 2)
        status = luaL_loadstring(L, argv[2]);
    else
        status = luaL_loadfile(L, argv[1]);
    if (status == 0) {
        int n = 0;
        if (!(argv[1][0] == '-' && argv[1][1] == 'e'))
            for (i = 2; i < argc; i++, n++)
                lua_pushstring(L, argv[i]);
        status = lua_pcall(L, n, 0, base);
    }
    report(L, status);
    lua_close(L);
    return status ? 1 : 0;
}
