// A webhook receiver that verifies every delivery with Svix's own library
// (npm `svix`), as a product on Svix's SDK would:
//
//     node webhook_receiver_svix.mjs PORT SECRET OUT
//
// Each request appends a JSON line to OUT (the webhook-id, the event type,
// its subject and seq, whether it verified) and is answered 204 when it
// verified, 400 when not.
import { appendFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Webhook } = require("svix");

const [port, secret, out] = process.argv.slice(2);
const verifier = new Webhook(secret);

createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let event;
    let verified = true;
    try {
      event = verifier.verify(body, req.headers);
    } catch {
      verified = false;
      event = JSON.parse(body);
    }
    const data = event.data || {};
    const status = verified ? 204 : 400;
    const line = {
      id: req.headers["webhook-id"],
      type: event.type,
      subject: data.id,
      seq: event.seq,
      userName: data.userName,
      verified,
      status,
    };
    appendFileSync(out, JSON.stringify(line) + "\n");
    res.writeHead(status).end();
  });
}).listen(Number(port), "127.0.0.1");
