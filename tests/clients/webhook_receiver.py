"""A webhook receiver that verifies every delivery with the Standard Webhooks
reference library (PyPI `standardwebhooks`), as a product would.

    webhook_receiver.py PORT SECRET OUT [MODE]

Each request appends a JSON line to OUT: the webhook-id, the event type, and
whether the signature verified. MODE: `ok` (default: 204 when verified, 400
when not), `gone` (410 Gone), `fail:N` (500 for the first N requests).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT, SECRET, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
MODE = sys.argv[4] if len(sys.argv) > 4 else "ok"
VERIFIER = Webhook(SECRET)
SEEN = {"requests": 0}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        SEEN["requests"] += 1
        try:
            event = VERIFIER.verify(body, dict(self.headers.items()))
            verified = True
        except WebhookVerificationError:
            event, verified = json.loads(body), False
        status = 204 if verified else 400
        if MODE == "gone":
            status = 410
        elif MODE.startswith("fail:") and SEEN["requests"] <= int(MODE[5:]):
            status = 500
        line = {
            "id": self.headers.get("webhook-id"),
            "type": event.get("type"),
            "userName": (event.get("data") or {}).get("userName"),
            "verified": verified,
            "status": status,
        }
        with open(OUT, "a") as out:
            out.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Receiver).serve_forever()
