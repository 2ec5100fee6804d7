// A TLS-terminating proxy for the browser test: https on 127.0.0.1:PORT with
// the test CA's certificate, forwarding to plain http on 127.0.0.1:UPSTREAM.
// idsync runs behind TLS termination in production too (an ingress); here it
// makes the public URL https, the only case in which browsers keep the
// `SameSite=None; Secure` cookie of a SAML sign-in.
//
//   TLS_CERT=cert.pem TLS_KEY=key.pem node tls-proxy.mjs PORT UPSTREAM
//
// Exits by itself when the process IDSYNC_OWNER_PID is gone.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const [port, upstream] = process.argv.slice(2).map(Number);
const server = https.createServer(
  { key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) },
  (req, res) => {
    const forwarded = http.request(
      { host: '127.0.0.1', port: upstream, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    forwarded.on('error', (e) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`upstream: ${e.message}`);
    });
    req.pipe(forwarded);
  },
);
server.listen(port, '127.0.0.1', () => console.log(`tls proxy on https://127.0.0.1:${port} -> ${upstream}`));

const owner = Number(process.env.IDSYNC_OWNER_PID || 0);
if (owner) {
  setInterval(() => {
    try { process.kill(owner, 0); } catch { server.close(); process.exit(0); }
  }, 1000).unref();
}
process.on('SIGTERM', () => { server.close(); process.exit(0); });
