#!/usr/bin/env node
// luws test peer: an echo server on Node's `ws` package, the most used server implementation of
// permessage-deflate (RFC 7692), so luws's compression is checked against code it shares nothing
// with.
//
// Design criteria
//   * The process contract of spec/servers/peer.py: listens on 127.0.0.1 port 0, prints exactly
//     "PORT <n> PID <pid>" once, then writes nothing more there (its logging goes to
//     $LUWS_SERVER_LOG, appended, or nowhere); exits on SIGTERM/SIGINT/SIGHUP, when its parent
//     changes, when nobody holds the read end of its stdout pipe any more (both checked every
//     second) and if it has not started within 15 s.
//   * Node's stdlib and `ws` only; `ws` comes from NODE_PATH or target/node/node_modules
//     (tools/install-deps.sh installs the pinned version there).
//   * Echoes every message with its type, messages up to 64 MiB, no server-initiated pings.
//   * permessage-deflate is on (negotiated when offered) with ws's defaults; the query string sets
//     it per connection: deflate=0 (off), server_no_context_takeover=1,
//     client_no_context_takeover=1, server_max_window_bits=N, client_max_window_bits=N,
//     threshold=N (ws's default 1024: shorter messages go out uncompressed).
//   * report=1: instead of echoing, answers each message with one text line about how it came
//     over the wire, read from the raw bytes (not from ws's internals):
//       "opcode=1 length=<bytes> frames=<n> rsv1=<0|1 per frame> wire=<payload bytes on the wire>"
//     so a spec can tell that a message arrived compressed (rsv1=1..., wire < length).
//   * Path /headers: the first message is the request's headers, "name: value" lines.
//   * Every 101 carries X-Luws-Peer: ws/<version>.
//
// Usage: node spec/servers/node_echo.js

'use strict';

const STARTUP_MS = 15000; // as peer.py's STARTUP
const startupAlarm = setTimeout(() => process.exit(1), STARTUP_MS);

const fs = require('fs');
const http = require('http');
const path = require('path');

// `ws` from NODE_PATH, else the project-local install.
function resolveWs() {
  try {
    return require.resolve('ws');
  } catch (e) {
    return require.resolve(path.join(__dirname, '..', '..', 'target', 'node', 'node_modules', 'ws'));
  }
}
const WS_MAIN = resolveWs();
const WebSocket = require(WS_MAIN);
const WS_VERSION = require(path.join(path.dirname(WS_MAIN), 'package.json')).version;

const MAX_SIZE = 64 * 1024 * 1024;

// ------------------------------------------------------------------ the process contract

let log = () => {};

function quietOutput() {
  const file = process.env.LUWS_SERVER_LOG;
  log = file
    ? (...args) => { try { fs.appendFileSync(file, 'node_echo: ' + args.join(' ') + '\n'); } catch (e) { /* never fail on logging */ } }
    : () => {};
  console.log = console.error = console.warn = console.info = log;
  process.on('uncaughtException', (e) => log('uncaught', e && e.stack || e));
}

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => process.exit(0));

// The live parent pid (process.ppid is read once at start-up).
function parentPid() {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch (e) {
    return process.ppid;
  }
}

// Whether fd `fd` of process `pid` is a read end of the pipe `link` ("pipe:[ino]").
function holdsReadEnd(pid, fd, link) {
  try {
    if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) !== link) return false;
    const m = /flags:\s*([0-7]+)/.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
    return m !== null && (parseInt(m[1], 8) & 3) !== 1; // O_RDONLY or O_RDWR, not O_WRONLY
  } catch (e) {
    return false;
  }
}

// Who holds the read end of our stdout pipe: [[pid, fd], ...]; null when stdout is no pipe.
// Node cannot poll a write end for POLLERR as peer.py does, so it looks in /proc: the parent
// first (io.popen's case), every process only when the parent does not hold it.
function stdoutReaders(ppid) {
  let link;
  try {
    link = fs.readlinkSync('/proc/self/fd/1');
  } catch (e) {
    return null;
  }
  if (!link.startsWith('pipe:')) return null;
  const holders = [];
  const scan = (pid) => {
    let fds;
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch (e) {
      return;
    }
    for (const fd of fds) if (holdsReadEnd(pid, fd, link)) holders.push([pid, fd]);
  };
  scan(ppid);
  if (holders.length === 0) {
    for (const pid of fs.readdirSync('/proc')) {
      if (/^\d+$/.test(pid) && Number(pid) !== process.pid) scan(pid);
    }
  }
  return { link, holders };
}

// `readers` (stdoutReaders) is found before the PORT line: after it the reader may be gone.
function watchdog(ppid, readers) {
  if (readers && readers.holders.length === 0) readers = null; // nobody to watch
  setInterval(() => {
    if (parentPid() !== ppid) process.exit(0);
    if (readers) {
      readers.holders = readers.holders.filter(([pid, fd]) => holdsReadEnd(pid, fd, readers.link));
      if (readers.holders.length === 0) process.exit(0);
    }
  }, 1000);
}

function announce(port, ppid) {
  const readers = stdoutReaders(ppid);
  fs.writeSync(1, `PORT ${port} PID ${process.pid}\n`);
  clearTimeout(startupAlarm);
  watchdog(ppid, readers);
  quietOutput();
}

// ------------------------------------------------------------------ what came over the wire

// Follows the client's frames in the raw byte stream: calls onFrame({ opcode, fin, rsv1, len })
// for every complete frame (len: payload bytes as sent, i.e. compressed).
class FrameSniffer {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.head = Buffer.alloc(0);
    this.frame = null;
    this.skip = 0;
  }

  static parseHead(b) {
    if (b.length < 2) return null;
    const n7 = b[1] & 0x7f;
    let hl = 2 + (n7 === 126 ? 2 : n7 === 127 ? 8 : 0) + (b[1] & 0x80 ? 4 : 0);
    if (b.length < hl) return null;
    let len = n7;
    if (n7 === 126) len = b.readUInt16BE(2);
    else if (n7 === 127) len = Number(b.readBigUInt64BE(2));
    return { hl, len, fin: !!(b[0] & 0x80), rsv1: !!(b[0] & 0x40), opcode: b[0] & 0x0f };
  }

  feed(chunk) {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.frame) {
        const n = Math.min(this.skip, chunk.length - pos);
        this.skip -= n;
        pos += n;
        if (this.skip === 0) this.done();
        continue;
      }
      const had = this.head.length;
      const buf = Buffer.concat([this.head, chunk.subarray(pos, pos + 14 - had)]);
      const h = FrameSniffer.parseHead(buf);
      if (!h) {
        this.head = buf;
        pos = chunk.length;
        continue;
      }
      pos += h.hl - had;
      this.head = Buffer.alloc(0);
      this.frame = h;
      this.skip = h.len;
      if (h.len === 0) this.done();
    }
  }

  done() {
    const f = this.frame;
    this.frame = null;
    this.onFrame(f);
  }
}

// Per connection: the wire facts of each complete data message, in order.
function wireReports(ws) {
  const queue = [];
  let cur = null;
  const sniffer = new FrameSniffer((f) => {
    if (f.opcode === 1 || f.opcode === 2) cur = { opcode: f.opcode, rsv1: [], wire: 0 };
    else if (f.opcode !== 0 || !cur) return; // control frames are not part of a message
    cur.rsv1.push(f.rsv1 ? 1 : 0);
    cur.wire += f.len;
    if (f.fin) {
      queue.push(cur);
      cur = null;
    }
  });
  // Before ws's own listener, so a frame is counted before ws emits its message.
  ws._socket.prependListener('data', (chunk) => sniffer.feed(chunk));
  return queue;
}

// ------------------------------------------------------------------ servers per configuration

const servers = new Map(); // configuration key -> WebSocket.Server (noServer)

function deflateOptions(q) {
  if (q.get('deflate') === '0') return false;
  const o = {};
  if (q.get('server_no_context_takeover') === '1') o.serverNoContextTakeover = true;
  if (q.get('client_no_context_takeover') === '1') o.clientNoContextTakeover = true;
  if (q.has('server_max_window_bits')) o.serverMaxWindowBits = Number(q.get('server_max_window_bits'));
  if (q.has('client_max_window_bits')) o.clientMaxWindowBits = Number(q.get('client_max_window_bits'));
  if (q.has('threshold')) o.threshold = Number(q.get('threshold'));
  return o;
}

function serverFor(q) {
  const pmd = deflateOptions(q);
  const key = JSON.stringify(pmd);
  let wss = servers.get(key);
  if (!wss) {
    wss = new WebSocket.WebSocketServer({
      noServer: true, clientTracking: false, maxPayload: MAX_SIZE, perMessageDeflate: pmd,
    });
    wss.on('headers', (headers) => headers.push(`X-Luws-Peer: ws/${WS_VERSION}`));
    servers.set(key, wss);
  }
  return wss;
}

function onConnection(ws, req, url) {
  const report = url.searchParams.get('report') === '1';
  const reports = report ? wireReports(ws) : null;
  ws.on('error', (e) => log('connection error', e.message));
  if (url.pathname === '/headers') {
    let text = '';
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      text += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\n`;
    }
    ws.send(text);
  }
  ws.on('message', (data, isBinary) => {
    if (!report) {
      ws.send(data, { binary: isBinary });
      return;
    }
    const r = reports.shift() || { opcode: 0, rsv1: [], wire: -1 };
    ws.send(`opcode=${r.opcode} length=${data.length} frames=${r.rsv1.length} ` +
            `rsv1=${r.rsv1.join('')} wire=${r.wire}`);
  });
}

function main() {
  const ppid = parentPid();
  const server = http.createServer((req, res) => {
    res.writeHead(426, { 'Content-Type': 'text/plain', Connection: 'close' });
    res.end('Upgrade Required');
  });
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', (e) => log('socket error', e.message));
    const url = new URL(req.url, 'http://127.0.0.1');
    serverFor(url.searchParams).handleUpgrade(req, socket, head, (ws) => onConnection(ws, req, url));
  });
  server.on('error', (e) => {
    log('server error', e.message);
    process.exit(1);
  });
  server.listen(0, '127.0.0.1', () => announce(server.address().port, ppid));
}

main();
