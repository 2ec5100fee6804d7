"""A webhook receiver that verifies every delivery with the Standard Webhooks
reference library (PyPI `standardwebhooks`), as a product would.

    webhook_receiver.py PORT SECRET OUT [MODE]

SECRET is a `whsec_` secret, or `@PATH`: a file of secrets, one per line,
read at each request; a delivery verifies when any of them verifies it, and
`verifiedWith` lists which (by line).

Each request appends a JSON line to OUT: the webhook-id, the event type, its
subject and seq, whether the signature verified, and when the request came
and was answered (`start`, `end`, Unix seconds). MODE: `ok` (default: 204
when verified, 400 when not), `gone` (410 Gone), `fail:N` (500 for the first N
requests), `redirect` (302 to a cloud metadata address), `huge` (200 with a
5 MiB answer), `slow:S` (answers after S seconds), `body` (200 with a small
JSON answer). Connections are kept alive; `peerPort` tells them apart.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT, SECRET, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
MODE = sys.argv[4] if len(sys.argv) > 4 else "ok"
def verifiers():
    if not SECRET.startswith("@"):
        return [Webhook(SECRET)]
    with open(SECRET[1:]) as f:
        return [Webhook(line.strip()) for line in f if line.strip()]

SEEN = {"requests": 0}
LOCK = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    # Keep-alive, as receivers behind any real server answer.
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        started = time.time()
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        with LOCK:
            SEEN["requests"] += 1
            nth = SEEN["requests"]
        event, verified_with = json.loads(body), []
        for i, verifier in enumerate(verifiers()):
            try:
                event = verifier.verify(body, dict(self.headers.items()))
                verified_with.append(i)
            except WebhookVerificationError:
                pass
        verified = bool(verified_with)
        status = 204 if verified else 400
        if MODE == "gone":
            status = 410
        elif MODE.startswith("fail:") and nth <= int(MODE[5:]):
            status = 500
        elif MODE == "redirect":
            status = 302
        elif MODE == "body" and verified:
            status = 200
        elif MODE.startswith("slow:"):
            time.sleep(float(MODE[5:]))
        data = event.get("data") or {}
        line = {
            "id": self.headers.get("webhook-id"),
            "type": event.get("type"),
            "subject": data.get("id"),
            "seq": event.get("seq"),
            "userName": data.get("userName"),
            "verified": verified,
            "verifiedWith": verified_with,
            "peerPort": self.client_address[1],
            "status": status,
            "start": started,
            "end": time.time(),
        }
        with LOCK, open(OUT, "a") as out:
            out.write(json.dumps(line) + "\n")
        if MODE == "huge":
            self.send_response(200)
            self.send_header("content-length", str(5 * 1024 * 1024))
            self.end_headers()
            try:
                self.wfile.write(b"x" * (5 * 1024 * 1024))
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if MODE == "body" and verified:
            answer = b'{"received": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        self.send_response(status)
        if status == 302:
            self.send_header("location", "http://169.254.169.254/latest/meta-data/")
        if status != 204:
            self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # The listen backlog of a real server (nginx's is 511), not socketserver's
    # 5: past that, connections wait for SYN retransmits (1 s, 3 s, 7 s, …)
    # and a request the sender gave up on is read long after.
    request_queue_size = 1024
    daemon_threads = True


Server(("127.0.0.1", PORT), Receiver).serve_forever()
