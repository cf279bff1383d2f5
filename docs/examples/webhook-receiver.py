#!/usr/bin/env python3
"""A listgate webhook receiver to start from: it checks each call's signature
and prints the call. Python's standard library only.

    python3 docs/examples/webhook-receiver.py --secret "the list's webhook_secret" --port 9000

with the list configured as

    webhook_url = "http://127.0.0.1:9000/listgate"
    webhook_secret = "the list's webhook_secret"

It answers 204 to a call whose X-Listgate-Signature verifies with the secret
and is at most five minutes old, and prints its JSON body as one line on
stdout; that is where a real receiver adds or drops the address in the tool
that sends the newsletter. Any other request gets 401 and is not printed.
listgate tries a call again until it gets a 2xx, so a receiver that stores
the event should deduplicate on X-Listgate-Delivery. The first line printed
is `listening on http://127.0.0.1:PORT/listgate` (`--port 0` picks a free
port). The browser test (tests/api/browser.rs) runs this very file.
"""

import argparse
import hashlib
import hmac
import http.server
import json
import time


def verify(secret: bytes, header: str, body: bytes, max_age=300) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < max_age


def handler(secret: bytes):
    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                genuine = verify(secret, self.headers.get("X-Listgate-Signature", ""), body)
            except (KeyError, ValueError):
                genuine = False
            if self.path != "/listgate" or not genuine:
                self.send_response(401)
                self.end_headers()
                return
            print(json.dumps(json.loads(body), ensure_ascii=False), flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format, *args):
            pass  # stdout carries only the calls

    return Receiver


def main():
    parser = argparse.ArgumentParser(description="Receive and verify listgate webhook calls.")
    parser.add_argument("--secret", required=True, help="the list's webhook_secret")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer((args.bind, args.port), handler(args.secret.encode()))
    print(f"listening on http://{args.bind}:{server.server_address[1]}/listgate", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
