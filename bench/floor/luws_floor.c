/* The Lua floor (issue 13): a minimal hand-written C Lua 5.1 module with the part of the LuWS
 * API that bench/client.lua uses (wsopen, wssend, wsreceive, wsclose, wait), built as luws.so
 * so that the very same Lua loop drives it. It does only what a correct client must do per
 * message on an open connection, so luws's instructions per message divided by these are
 * luws's overhead over the least a Lua module can cost:
 *
 *   receive: non-blocking recv(2) into one reused buffer (4096 bytes a call, luws's default
 *            receive_chunk_size; a frame larger than that is received straight into place),
 *            frame header (7, 16 and 64-bit lengths; unmasked, no reserved bits, RFC 6455
 *            §5.2), fragments reassembled, UTF-8 check of text (§8.1), lua_pushlstring, the
 *            handler called under lua_pcall (LuWS swallows handler errors), until a read comes
 *            back short or with EAGAIN;
 *   send:    UTF-8 check of text, header + 4-byte mask key + payload masked a 64-bit word at a
 *            time into one reused buffer, one send(2);
 *   control: Ping answered with Pong, Close answered and reported as LuWS does.
 *
 * What it leaves out, because no correct client needs it per message: the receive budget,
 * timeouts, keepalive, reconnecting, TLS, options other than max_payload_size and handler_args,
 * the control handler, buffered (non-blocking) sends: a send that finds the socket full waits
 * in poll(2). The opening handshake is blocking but correct (random key, 101, Upgrade,
 * Connection and Sec-WebSocket-Accept checked), since its cost is not per message.
 *
 * Mask keys (§5.3, §10.3: unpredictable) come from getrandom(2), 4 KiB at a time: the kernel's
 * CSPRNG, one syscall per 1024 frames. Builds warning-free with -Wall -Wextra against Lua 5.1's
 * or LuaJIT's headers. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"

/* One recv(2) asks for this much unless the frame being received is larger. */
#define CHUNK 4096
/* LuWS's default max_payload_size. */
#define MAX_PAYLOAD_DEFAULT 65535
/* The most connections one wait() call takes (the benchmark passes one). */
#define MAX_WAIT 64

typedef struct {
  int fd;           /* -1 once closed */
  int handler_ref;  /* registry references */
  int args_ref;     /* LUA_NOREF without handler_args */
  int args_n;
  int ready;        /* bytes left over by the handshake: wait() must not sleep */
  size_t max_payload;
  unsigned char *rbuf; /* received bytes [rhead, rtail) of rcap */
  size_t rcap, rhead, rtail;
  unsigned char *sbuf; /* the frame being sent */
  size_t scap;
  unsigned char *frag; /* a fragmented message being reassembled */
  size_t fcap, flen;
  int fop;             /* its opcode; 0 when none */
} conn;

/* ---- randomness: mask keys and the handshake key */

static unsigned char pool[4096];
static size_t pool_pos = sizeof pool;

static void random_bytes(unsigned char *out, size_t n) {
  if (pool_pos + n > sizeof pool) {
    size_t got = 0;
    while (got < sizeof pool) {
      ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
      if (r > 0)
        got += (size_t)r;
      else if (errno != EINTR)
        abort(); /* no kernel randomness: no safe mask keys either */
    }
    pool_pos = 0;
  }
  memcpy(out, pool + pool_pos, n);
  pool_pos += n;
}

/* ---- UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF) */

static int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    /* ASCII runs 8 bytes at a time: most text is ASCII. */
    if (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!(w & 0x8080808080808080ULL)) {
        i += 8;
        continue;
      }
    }
    unsigned c = s[i];
    if (c < 0x80) {
      i += 1;
    } else if (c < 0xC2) {
      return 0; /* a stray continuation byte, or an overlong 2-byte lead */
    } else if (c < 0xE0) {
      if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
      i += 2;
    } else if (c < 0xF0) {
      if (i + 2 >= n) return 0;
      unsigned c1 = s[i + 1];
      if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) return 0; /* overlong, surrogate */
      i += 3;
    } else if (c < 0xF5) {
      if (i + 3 >= n) return 0;
      unsigned c1 = s[i + 1];
      if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80) return 0;
      if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90)) return 0; /* overlong, > U+10FFFF */
      i += 4;
    } else {
      return 0;
    }
  }
  return 1;
}

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept (RFC 6455 §4.1) only */

static uint32_t rol(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static void sha1_block(uint32_t h[5], const unsigned char *p) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
    else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
    else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
    else f = b ^ c ^ d, k = 0xCA62C1D6;
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d, d = c, c = rol(b, 30), b = a, a = t;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const unsigned char *msg, size_t n, unsigned char out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  unsigned char block[64];
  size_t i = 0;
  for (; i + 64 <= n; i += 64) sha1_block(h, msg + i);
  size_t r = n - i;
  memcpy(block, msg + i, r);
  block[r++] = 0x80;
  if (r > 56) {
    memset(block + r, 0, 64 - r);
    sha1_block(h, block);
    r = 0;
  }
  memset(block + r, 0, 56 - r);
  uint64_t bits = (uint64_t)n * 8;
  for (int j = 0; j < 8; j++) block[56 + j] = (unsigned char)(bits >> (56 - 8 * j));
  sha1_block(h, block);
  for (int j = 0; j < 5; j++)
    for (int k = 0; k < 4; k++) out[4 * j + k] = (unsigned char)(h[j] >> (24 - 8 * k));
}

static void base64(const unsigned char *in, size_t n, char *out) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    out[o++] = tab[v >> 18 & 63];
    out[o++] = tab[v >> 12 & 63];
    out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? tab[v & 63] : '=';
  }
  out[o] = 0;
}

/* ---- sending */

/* XORs 8 bytes at a time with the key repeated twice (loads and stores through memcpy, so any
 * alignment and either byte order is right), then the tail byte by byte. */
static void mask_copy(unsigned char *dst, const unsigned char *src, size_t n, const unsigned char key[4]) {
  uint32_t k32;
  memcpy(&k32, key, 4);
  uint64_t k = (uint64_t)k32 << 32 | k32;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, src + i, 8);
    w ^= k;
    memcpy(dst + i, &w, 8);
  }
  for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

/* All of buf, waiting in poll(2) whenever the socket is full. 0, or -1 with errno. */
static int send_all(int fd, const unsigned char *buf, size_t n) {
  while (n > 0) {
    ssize_t r = send(fd, buf, n, MSG_NOSIGNAL);
    if (r >= 0) {
      buf += r;
      n -= (size_t)r;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      struct pollfd p = {fd, POLLOUT, 0};
      if (poll(&p, 1, -1) < 0 && errno != EINTR) return -1;
    } else if (errno != EINTR) {
      return -1;
    }
  }
  return 0;
}

/* One masked frame (FIN set) in one send(2). 0, or -1 with errno. */
static int send_frame(conn *c, int opcode, const unsigned char *data, size_t len) {
  size_t hl = 2 + (len < 126 ? 0 : len < 65536 ? 2 : 8) + 4;
  if (c->scap < hl + len) {
    unsigned char *p = realloc(c->sbuf, hl + len);
    if (!p) {
      errno = ENOMEM;
      return -1;
    }
    c->sbuf = p;
    c->scap = hl + len;
  }
  unsigned char *h = c->sbuf;
  h[0] = (unsigned char)(0x80 | opcode);
  if (len < 126) {
    h[1] = (unsigned char)(0x80 | len);
  } else if (len < 65536) {
    h[1] = 0x80 | 126;
    h[2] = (unsigned char)(len >> 8);
    h[3] = (unsigned char)len;
  } else {
    h[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
  }
  unsigned char *key = h + hl - 4;
  random_bytes(key, 4);
  mask_copy(h + hl, data, len, key);
  return send_all(c->fd, c->sbuf, hl + len);
}

/* ---- the connection userdata */

/* The connection's metatable is upvalue 1 of every function: comparing with it is the whole
 * type check. luaL_checkudata would look the metatable up by name in the registry, interning
 * that name again on every call (~200 instructions under Lua 5.1). */
static conn *check_conn(lua_State *L, int i) {
  conn *c = (conn *)lua_touserdata(L, i);
  if (c && lua_getmetatable(L, i)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (ok) return c;
  }
  luaL_typerror(L, i, "luws connection");
  return NULL;
}

static void conn_close_fd(conn *c) {
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
}

static int conn_gc(lua_State *L) {
  conn *c = check_conn(L, 1);
  conn_close_fd(c);
  luaL_unref(L, LUA_REGISTRYINDEX, c->handler_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c->args_ref);
  c->handler_ref = c->args_ref = LUA_NOREF;
  free(c->rbuf);
  free(c->sbuf);
  free(c->frag);
  c->rbuf = c->sbuf = c->frag = NULL;
  return 0;
}

/* handler(conn, op, data, handler_args...) with conn at stack index 1 and op already pushed;
 * pops op. Errors in the handler are dropped, as LuWS does. */
static void call_handler(lua_State *L, conn *c, const char *data, size_t len) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->handler_ref);
  lua_insert(L, -2);
  lua_pushvalue(L, 1);
  lua_insert(L, -2);
  lua_pushlstring(L, data, len);
  int n = 3;
  if (c->args_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->args_ref);
    for (int i = 1; i <= c->args_n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -c->args_n - 1);
    n += c->args_n;
  }
  if (lua_pcall(L, n, 0, 0) != 0) lua_pop(L, 1);
}

/* A receive failure: the handler hears (false, msg), the socket closes, wsreceive answers
 * nil, msg. A protocol error first sends Close with `code` (0: none). */
static int fail(lua_State *L, conn *c, int code, const char *msg) {
  if (code && c->fd >= 0) {
    unsigned char body[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    send_frame(c, 8, body, 2);
  }
  conn_close_fd(c);
  lua_pushboolean(L, 0);
  call_handler(L, c, msg, strlen(msg));
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

/* A complete message: UTF-8 check of text, then the handler. 0, or -1 after fail(). */
static int message(lua_State *L, conn *c, int op, const unsigned char *data, size_t len, int *nret) {
  if (op == 1 && !utf8_valid(data, len)) {
    *nret = fail(L, c, 1007, "receiver error: invalid UTF-8");
    return -1;
  }
  lua_pushinteger(L, op);
  call_handler(L, c, (const char *)data, len);
  return 0;
}

/* Handles every complete frame in the buffer. Returns 0 with *need set to the size of the
 * incomplete frame at the front (0 when not known yet), or -1 when the connection ended
 * (*nret values are on the stack). */
static int deliver(lua_State *L, conn *c, size_t *need, int *nret) {
  *need = 0;
  while (c->fd >= 0 && c->rtail - c->rhead >= 2) {
    const unsigned char *p = c->rbuf + c->rhead;
    size_t avail = c->rtail - c->rhead;
    unsigned b0 = p[0], b1 = p[1];
    if (b1 & 0x80) return *nret = fail(L, c, 1002, "receiver error: masked frame from server"), -1;
    if (b0 & 0x70) return *nret = fail(L, c, 1002, "receiver error: reserved bits set"), -1;
    uint64_t len = b1 & 0x7F;
    size_t hl = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = (uint64_t)p[2] << 8 | p[3];
      hl = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
      hl = 10;
    }
    int op = b0 & 0x0F, fin = b0 & 0x80;
    if (op >= 8 && (!fin || len > 125))
      return *nret = fail(L, c, 1002, "receiver error: bad control frame"), -1;
    if (len > c->max_payload || (op < 8 && c->flen + len > c->max_payload))
      return *nret = fail(L, c, 1009, "receiver error: message too big"), -1;
    if (avail < hl + len) {
      *need = hl + (size_t)len;
      break;
    }
    const unsigned char *data = p + hl;
    /* Consumed before any handler runs, so a handler that calls wsreceive sees a sane buffer;
     * the bytes stay in place until the next recv. */
    c->rhead += hl + (size_t)len;
    switch (op) {
    case 1:
    case 2:
    case 0:
      if (fin && op != 0 && c->fop == 0) {
        if (message(L, c, op, data, (size_t)len, nret)) return -1;
        break;
      }
      if ((op == 0) != (c->fop != 0))
        return *nret = fail(L, c, 1002, "receiver error: bad continuation"), -1;
      if (op) c->fop = op;
      if (c->fcap < c->flen + len) {
        unsigned char *q = realloc(c->frag, c->flen + (size_t)len);
        if (!q) return *nret = fail(L, c, 1011, "receiver error: out of memory"), -1;
        c->frag = q;
        c->fcap = c->flen + (size_t)len;
      }
      memcpy(c->frag + c->flen, data, (size_t)len);
      c->flen += (size_t)len;
      if (fin) {
        int fop = c->fop;
        size_t flen = c->flen;
        c->fop = 0;
        c->flen = 0;
        if (message(L, c, fop, c->frag, flen, nret)) return -1;
      }
      break;
    case 9:
      if (send_frame(c, 10, data, (size_t)len))
        return *nret = fail(L, c, 0, "receiver error: closed"), -1;
      break;
    case 10:
      break;
    case 8: {
      /* Close (§5.5.1): echo the status code, then end as LuWS does. */
      send_frame(c, 8, data, len >= 2 ? 2 : 0);
      return *nret = fail(L, c, 0, "receiver error: closed"), -1;
    }
    default:
      return *nret = fail(L, c, 1002, "receiver error: unknown opcode"), -1;
    }
  }
  if (c->rhead == c->rtail) c->rhead = c->rtail = 0;
  return 0;
}

/* wsreceive(conn) -> false, nbytes (nothing more to read now) | nil, err */
static int l_wsreceive(lua_State *L) {
  conn *c = check_conn(L, 1);
  lua_settop(L, 1);
  if (c->fd < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "not connected");
    return 2;
  }
  c->ready = 0;
  size_t nread = 0;
  int drained = 0;
  for (;;) {
    size_t need;
    int nret;
    if (deliver(L, c, &need, &nret)) return nret;
    /* A short read took all the socket had (a stream socket returns less than asked only
     * then), so asking again would only meet EAGAIN: data arriving later wakes the next wait
     * (poll is level-triggered). luws stops there too. */
    if (c->fd < 0 || drained) { /* or a handler closed it */
      lua_pushboolean(L, 0);
      lua_pushinteger(L, (lua_Integer)nread);
      return 2;
    }
    size_t avail = c->rtail - c->rhead, want;
    if (need > CHUNK) {
      /* A large frame: room for all of it, and ask for exactly its rest, so it is received in
       * place and nothing after it has to be moved. */
      if (c->rcap - c->rhead < need) {
        if (c->rcap < need) {
          unsigned char *q = realloc(c->rbuf, need);
          if (!q) return fail(L, c, 1011, "receiver error: out of memory");
          c->rbuf = q;
          c->rcap = need;
        }
        memmove(c->rbuf, c->rbuf + c->rhead, avail);
        c->rhead = 0;
        c->rtail = avail;
      }
      want = need - avail;
    } else {
      /* Less than one chunk waits (a part of a frame): move it to the front when the chunk
       * would not fit after it. rcap >= 2 * CHUNK, so it then does. */
      if (c->rcap - c->rtail < CHUNK) {
        memmove(c->rbuf, c->rbuf + c->rhead, avail);
        c->rhead = 0;
        c->rtail = avail;
      }
      want = CHUNK;
    }
    ssize_t n = recv(c->fd, c->rbuf + c->rtail, want, 0);
    if (n > 0) {
      c->rtail += (size_t)n;
      nread += (size_t)n;
      drained = (size_t)n < want;
    } else if (n == 0) {
      return fail(L, c, 0, "receiver error: closed");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      lua_pushboolean(L, 0);
      lua_pushinteger(L, (lua_Integer)nread);
      return 2;
    } else if (errno != EINTR) {
      char msg[160];
      snprintf(msg, sizeof msg, "receiver error: %s", strerror(errno));
      return fail(L, c, 0, msg);
    }
  }
}

/* wssend(conn, opcode, data) -> true | false, err */
static int l_wssend(lua_State *L) {
  conn *c = check_conn(L, 1);
  int op = (int)luaL_checkinteger(L, 2);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  if (op != 1 && op != 2) return luaL_argerror(L, 2, "1 (text) or 2 (binary) expected");
  if (c->fd < 0) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "not connected");
    return 2;
  }
  if (op == 1 && !utf8_valid((const unsigned char *)data, len)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "send error: invalid UTF-8");
    return 2;
  }
  if (send_frame(c, op, (const unsigned char *)data, len)) {
    lua_pushboolean(L, 0);
    lua_pushfstring(L, "send error: %s", strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* wsclose(conn): Close 1000, then the socket goes (the peer's answer is not awaited). */
static int l_wsclose(lua_State *L) {
  conn *c = check_conn(L, 1);
  if (c->fd >= 0) {
    static const unsigned char normal[2] = {0x03, 0xE8};
    send_frame(c, 8, normal, 2);
    conn_close_fd(c);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* wait(conns [, timeout]) -> the ready ones (a table; empty when time ran out) */
static int l_wait(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double t = luaL_optnumber(L, 2, -1);
  int n = (int)lua_objlen(L, 1);
  if (n > MAX_WAIT) return luaL_argerror(L, 1, "too many connections for the floor");
  struct pollfd fds[MAX_WAIT];
  int timeout = t < 0 ? -1 : (int)(t * 1000 + 0.999);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    conn *c = check_conn(L, lua_gettop(L));
    lua_pop(L, 1);
    fds[i].fd = c->fd; /* poll ignores a negative fd */
    fds[i].events = POLLIN;
    fds[i].revents = 0;
    if (c->ready) timeout = 0;
  }
  int r;
  do r = poll(fds, (nfds_t)n, timeout);
  while (r < 0 && errno == EINTR);
  lua_createtable(L, r > 0 ? r : 0, 0);
  int k = 0;
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    conn *c = (conn *)lua_touserdata(L, -1);
    if (fds[i].revents || c->ready)
      lua_rawseti(L, -2, ++k);
    else
      lua_pop(L, 1);
  }
  return 1;
}

/* ---- opening (blocking; not part of the per-message cost) */

/* The value of header `name` in the response head `h` (NUL-terminated), or NULL. */
static const char *header(const char *h, const char *name, size_t *vlen) {
  size_t nl = strlen(name);
  for (const char *line = strstr(h, "\r\n"); line && line[2] != '\r'; line = strstr(line + 2, "\r\n")) {
    const char *s = line + 2;
    if (strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
      s += nl + 1;
      while (*s == ' ' || *s == '\t') s++;
      const char *e = strstr(s, "\r\n");
      while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
      *vlen = (size_t)(e - s);
      return s;
    }
  }
  return NULL;
}

static int has_token(const char *v, size_t n, const char *tok) {
  size_t tl = strlen(tok);
  for (size_t i = 0; i + tl <= n; i++)
    if (strncasecmp(v + i, tok, tl) == 0) return 1;
  return 0;
}

static int open_fail(lua_State *L, int fd, const char *msg) {
  if (fd >= 0) close(fd);
  lua_pushboolean(L, 0);
  lua_pushstring(L, msg);
  return 2;
}

/* wsopen(url, handler [, options]) -> conn | false, err */
static int l_wsopen(lua_State *L) {
  const char *url = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (strncmp(url, "ws://", 5) != 0) return open_fail(L, -1, "floor: ws:// URLs only");
  const char *hp = url + 5, *path = strchr(hp, '/');
  if (!path) path = hp + strlen(hp);
  char hostport[256], host[256], port[16] = "80";
  size_t hpl = (size_t)(path - hp);
  if (hpl == 0 || hpl >= sizeof hostport) return open_fail(L, -1, "floor: bad host");
  memcpy(hostport, hp, hpl);
  hostport[hpl] = 0;
  memcpy(host, hostport, hpl + 1);
  char *colon = strrchr(host, ':');
  if (colon) {
    *colon = 0;
    snprintf(port, sizeof port, "%s", colon + 1);
  }
  if (!*path) path = "/";

  struct addrinfo hints, *ai;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, port, &hints, &ai) != 0) return open_fail(L, -1, "floor: host not found");
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    freeaddrinfo(ai);
    return open_fail(L, fd, "floor: connect failed");
  }
  freeaddrinfo(ai);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as luws */

  unsigned char raw[16];
  char key[32], req[1024];
  random_bytes(raw, sizeof raw);
  base64(raw, sizeof raw, key);
  int rl = snprintf(req, sizeof req,
                    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    path, hostport, key);
  if (rl < 0 || (size_t)rl >= sizeof req || send_all(fd, (unsigned char *)req, (size_t)rl))
    return open_fail(L, fd, "floor: handshake send failed");

  /* The response head, and whatever frames followed it in the same reads. */
  size_t cap = 2 * CHUNK, got = 0;
  unsigned char *buf = malloc(cap);
  if (!buf) return open_fail(L, fd, "floor: out of memory");
  char *end = NULL;
  while (!end) {
    if (got + 1 >= cap) {
      free(buf);
      return open_fail(L, fd, "floor: response head too long");
    }
    ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
    if (r <= 0 && !(r < 0 && errno == EINTR)) {
      free(buf);
      return open_fail(L, fd, "floor: no handshake response");
    }
    if (r > 0) got += (size_t)r;
    buf[got] = 0;
    end = strstr((char *)buf, "\r\n\r\n");
  }
  size_t head = (size_t)(end + 4 - (char *)buf);
  end[2] = 0; /* the head ends with its last header's CRLF */
  char want[32], accept_src[80]; /* 24-char key + 36-char GUID */
  unsigned char digest[20];
  snprintf(accept_src, sizeof accept_src, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  sha1((unsigned char *)accept_src, strlen(accept_src), digest);
  base64(digest, sizeof digest, want);
  size_t vl;
  const char *v;
  const char *why = NULL;
  if (strncmp((char *)buf, "HTTP/1.1 101", 12) != 0) why = "floor: upgrade refused";
  else if (!(v = header((char *)buf, "upgrade", &vl)) || !has_token(v, vl, "websocket")) why = "floor: no Upgrade: websocket";
  else if (!(v = header((char *)buf, "connection", &vl)) || !has_token(v, vl, "upgrade")) why = "floor: no Connection: upgrade";
  else if (!(v = header((char *)buf, "sec-websocket-accept", &vl)) || vl != strlen(want) || memcmp(v, want, vl) != 0)
    why = "floor: wrong Sec-WebSocket-Accept";
  if (why) {
    free(buf);
    return open_fail(L, fd, why);
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  conn *c = (conn *)lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->rbuf = buf;
  c->rcap = cap;
  c->rhead = head;
  c->rtail = got;
  c->ready = got > head;
  c->max_payload = MAX_PAYLOAD_DEFAULT;
  c->handler_ref = c->args_ref = LUA_NOREF;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 2);
  c->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "max_payload_size");
    if (lua_isnumber(L, -1)) c->max_payload = (size_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 3, "handler_args");
    if (lua_istable(L, -1)) {
      c->args_n = (int)lua_objlen(L, -1);
      c->args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
      lua_pop(L, 1);
    }
  }
  return 1;
}

static const luaL_Reg funcs[] = {
    {"wsopen", l_wsopen}, {"wssend", l_wssend}, {"wsreceive", l_wsreceive},
    {"wsclose", l_wsclose}, {"wait", l_wait}, {NULL, NULL},
};

int luaopen_luws(lua_State *L) {
  lua_newtable(L); /* the connection metatable: upvalue of every function below */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, conn_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  for (const luaL_Reg *f = funcs; f->name; f++) {
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -2, f->name);
  }
  lua_remove(L, -2);
  lua_pushliteral(L, "floor");
  lua_setfield(L, -2, "VERSION");
  return 1;
}
