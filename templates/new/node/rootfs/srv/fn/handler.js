// The @NAME@ function: an HTTP server on node:http answering every GET with a greeting. The
// name is HTML-escaped by escape-html, an npm dependency (package.json, package-lock.json next
// to this file) that `stratos build` installs into node_modules.
//
// Readiness: once listening it writes READY=1 to the descriptor named by $STRATOS_NOTIFY_FD
// (the stratos-init notify protocol), so `stratos boot --invoke` calls it only when it can
// answer.
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const escapeHtml = require('escape-html');

// The function: the request's URL (path and query) in, the response's text out.
function handle(url) {
  const q = url.indexOf('?');
  let name = 'world';
  if (q >= 0) {
    for (const pair of url.slice(q + 1).split('&')) {
      const [key, value] = pair.split('=');
      if (key === 'name' && value) name = decodeURIComponent(value);
    }
  }
  return `Hello, ${escapeHtml(name)}! This is @NAME@ on StratOS.\n`;
}

const server = http.createServer((req, res) => {
  if (req.method !== 'GET') {
    res.writeHead(405, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('only GET\n');
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(handle(req.url));
});

server.listen(Number(process.env.PORT || 8080), '0.0.0.0', () => {
  console.log(`@NAME@: listening on ${server.address().port}`);
  const fd = process.env.STRATOS_NOTIFY_FD;
  if (fd) {
    fs.writeSync(Number(fd), 'READY=1\n');
    fs.closeSync(Number(fd));
  }
});

// A graceful stop: finish what is in flight, then exit 0.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
