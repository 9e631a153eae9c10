// The node-fn function: an HTTP server on node:http, answering every GET with a greeting, like
// python-fn's. The name is HTML-escaped by escape-html, an npm dependency (package.json,
// package-lock.json next to this file) that `stratos build` installs into node_modules.
//
// Readiness: once listening it writes READY=1 to the descriptor named by $STRATOS_NOTIFY_FD,
// the stratos-init notify protocol, so runtime_ready marks the moment the function can answer.
//
// GET /spawn tries to start a process (child_process): the seccomp baseline refuses it, the
// handler answers what the kernel said, and the function keeps serving.
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const escapeHtml = require('escape-html');

function greeting(url) {
  const q = url.indexOf('?');
  let name = 'world';
  if (q >= 0) {
    for (const pair of url.slice(q + 1).split('&')) {
      const [key, value] = pair.split('=');
      if (key === 'name' && value) name = decodeURIComponent(value);
    }
  }
  return `Hello, ${escapeHtml(name)}! This is StratOS on Node.js.\n`;
}

function spawn() {
  // Loaded only when asked: the function's start does not pay for it.
  const { spawnSync } = require('node:child_process');
  const r = spawnSync('/usr/bin/node', ['-e', '0']);
  if (r.error) {
    console.log(`node-fn: starting a process was refused: ${r.error.code}`);
    return `spawn refused: ${r.error.code}\n`;
  }
  return `spawn ran: exit ${r.status}\n`;
}

const server = http.createServer((req, res) => {
  if (req.method !== 'GET') {
    res.writeHead(405, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('only GET\n');
    return;
  }
  const body = req.url === '/spawn' ? spawn() : greeting(req.url);
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(body);
});

server.listen(Number(process.env.PORT || 8080), '0.0.0.0', () => {
  console.log(`node-fn: listening on ${server.address().port}`);
  const fd = process.env.STRATOS_NOTIFY_FD;
  if (fd) {
    fs.writeSync(Number(fd), 'READY=1\n');
    fs.closeSync(Number(fd));
  }
});

// A graceful stop: finish what is in flight, then exit 0.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
