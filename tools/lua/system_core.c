/*
 * `system.core` for the Lua versions tools/lua-build.sh builds: the three functions of
 * luasystem that busted calls (busted/core.lua: gettime, monotime, sleep), because Debian's
 * lua-system source package is not reachable from here and its binary is built for 5.1-5.4 only.
 * Debian's pure-Lua system/init.lua (`require 'system.core'`) loads it unchanged.
 *   gettime()  seconds since the epoch (CLOCK_REALTIME), a float
 *   monotime() seconds of CLOCK_MONOTONIC, a float
 *   sleep(s)   sleeps s seconds (nanosleep, resumed after a signal); returns nothing
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <time.h>
#include "lua.h"
#include "lauxlib.h"

static int clock_seconds(lua_State *L, clockid_t id)
{
    struct timespec t;
    if (clock_gettime(id, &t) != 0) return luaL_error(L, "clock_gettime failed");
    lua_pushnumber(L, (lua_Number)t.tv_sec + (lua_Number)t.tv_nsec / 1e9);
    return 1;
}

static int l_gettime(lua_State *L) { return clock_seconds(L, CLOCK_REALTIME); }
static int l_monotime(lua_State *L) { return clock_seconds(L, CLOCK_MONOTONIC); }

static int l_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec t;
    if (s <= 0) return 0;
    t.tv_sec = (time_t)s;
    t.tv_nsec = (long)((s - (lua_Number)t.tv_sec) * 1e9);
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
    return 0;
}

static const luaL_Reg funcs[] = {
    {"gettime", l_gettime}, {"monotime", l_monotime}, {"sleep", l_sleep}, {NULL, NULL}};

int luaopen_system_core(lua_State *L)
{
    lua_newtable(L);
    luaL_setfuncs(L, funcs, 0);
    return 1;
}
