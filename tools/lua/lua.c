/*
 * A stand-alone Lua interpreter for the Lua versions Debian does not package (tools/lua-build.sh
 * builds it from the lua-src crate's sources, which ship the library but not lua.c).
 * It does what the tests ask of `lua`: `lua [-e CHUNK]... [-l MOD]... [SCRIPT [ARGS...]]`,
 * `lua -v`, and `-` or `--` as in lua.c; the global `arg` as lua.c sets it; errors reported with
 * a traceback and exit status 1. No interactive mode. Written against the API that Lua 5.1 to
 * 5.5 share, and linked with -Wl,-E so that C modules loaded with require() find the Lua API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_pushstring(L, msg ? msg : "(error object is not a string)");
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
    return 1;
}

/* Runs the function on top of the stack with nargs arguments below it; reports a failure. */
static int docall(lua_State *L, const char *progname, int nargs)
{
    int base = lua_gettop(L) - nargs;
    int status;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    status = lua_pcall(L, nargs, 0, base);
    lua_remove(L, base);
    if (status != 0) {
        fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status != 0;
}

static int loadfailed(lua_State *L, const char *progname)
{
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
}

int main(int argc, char **argv)
{
    const char *progname = argv[0];
    lua_State *L = luaL_newstate();
    int i, script = 0, status = 0;
    if (L == NULL) {
        fprintf(stderr, "%s: cannot create a Lua state\n", progname);
        return 1;
    }
    luaL_openlibs(L);
    /* The script's index first: `arg` is set before any -e chunk runs, as lua.c does. */
    for (i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-e") == 0 || strcmp(argv[i], "-l") == 0) && i + 1 < argc) {
            i++;
        } else if (strcmp(argv[i], "--") == 0) {
            if (i + 1 < argc) script = i + 1;
            break;
        } else if (argv[i][0] != '-' || argv[i][1] == '\0') {
            script = i;
            break;
        }
    }
    lua_createtable(L, argc, script ? script + 1 : argc);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - (script ? script : argc));
    }
    lua_setglobal(L, "arg");
    for (i = 1; status == 0 && i < argc && (script == 0 || i < script); i++) {
        if (strcmp(argv[i], "-v") == 0) {
            lua_getglobal(L, "_VERSION");
            printf("%s (luws tools/lua/lua.c)\n", lua_tostring(L, -1));
            lua_pop(L, 1);
        } else if (strcmp(argv[i], "-e") == 0 && i + 1 < argc) {
            i++;
            status = luaL_loadbuffer(L, argv[i], strlen(argv[i]), "=(command line)") != 0
                ? loadfailed(L, progname) : docall(L, progname, 0);
        } else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc) {
            i++;
            lua_getglobal(L, "require");
            lua_pushstring(L, argv[i]);
            status = docall(L, progname, 1);
        } else if (strcmp(argv[i], "--") != 0) {
            fprintf(stderr, "usage: %s [-v] [-e CHUNK]... [-l MOD]... [SCRIPT [ARGS...]]\n",
                    progname);
            status = 2;
        }
    }
    if (status == 0 && script) {
        const char *name = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
        if (luaL_loadfile(L, name) != 0) {
            status = loadfailed(L, progname);
        } else {
            luaL_checkstack(L, argc - script, "too many arguments to script");
            for (i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
            status = docall(L, progname, argc - script - 1);
        }
    }
    lua_close(L); /* runs the finalizers (__gc, __close) as lua.c does */
    return status ? (status == 2 ? 2 : 1) : 0;
}
