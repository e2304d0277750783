"""Real HTTP servers on loopback for the webhook and SMS channel tests.

- :class:`LoopbackHTTP`: a ``ThreadingHTTPServer`` in a thread that records every request and
  answers from a plan of faults (``server.plan(503, 429, ...)``: the next requests get those
  answers, then the normal one).
- :class:`WebhookReceiver`: a receiver as docs/channels.md tells shops to write one: it checks
  the ``X-Cartrescue-Signature`` (HMAC of timestamp + body, five-minute window) and drops a
  repeated ``Idempotency-Key``; ``accepted`` holds what it took, once each.
- :class:`TwilioEmulator`: the shape of Twilio's Messages API: form-encoded POST to
  ``/2010-04-01/Accounts/{sid}/Messages.json`` with basic auth, 201 and a JSON message with a
  ``SM…`` sid, Twilio's JSON errors (``code``, ``message``, ``status``), and the account
  resource ``GET /2010-04-01/Accounts/{sid}.json`` that ``doctor`` reads.

No mock: the channels talk HTTP/1.1 over real sockets to these servers.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from cartrescue.signing import BadSignature, verify


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    drop: bool = False  # close the connection without an answer
    process: bool = False  # handle the request as usual first (then delay or drop the answer)
    trickle: float = 0.0  # seconds between the bytes of the body: an answer that comes slowly


class LoopbackHTTP:
    """A threaded HTTP server on 127.0.0.1; subclasses override :meth:`answer`. With ``tls`` it
    speaks HTTPS with a self-signed certificate for 127.0.0.1 (``ca_file``: what a client trusts)."""

    def __init__(self, *, tls: bool = False) -> None:
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self._plan: list[Answer] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with owner.lock:
                    owner.requests.append(seen)
                    planned = owner._plan.pop(0) if owner._plan else None
                answer = owner.answer(seen) if planned is None or planned.process else planned
                if planned is not None and planned.process:
                    answer = Answer(answer.status, answer.body, answer.headers, planned.delay, planned.drop,
                                    trickle=planned.trickle)
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.drop:
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if not answer.trickle:
                    self.wfile.write(answer.body)
                try:
                    for at in range(len(answer.body) if answer.trickle else 0):
                        time.sleep(answer.trickle)
                        self.wfile.write(answer.body[at:at + 1])
                except OSError:  # the client gave up on it
                    self.close_connection = True

            do_GET = do_POST = do_HEAD = do_PUT = do_OPTIONS = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ca_file: Path | None = None
        if tls:
            from smtpserver import self_signed_cert

            cert, key = self_signed_cert()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            # the handshake happens in the handler's thread (its first read), not in accept()
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True,
                                                     do_handshake_on_connect=False)
            self.ca_file = cert
            self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, seen: Seen) -> Answer:
        return Answer(200, b"ok")

    def plan(self, *answers: Answer | int) -> None:
        """The next requests get these answers (a bare status: that status, empty body)."""
        with self.lock:
            self._plan.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    def __enter__(self) -> "LoopbackHTTP":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookReceiver(LoopbackHTTP):
    """Verifies signatures, drops replays by idempotency key, keeps what it accepted."""

    def __init__(self, secret: str, *, tls: bool = False) -> None:
        super().__init__(tls=tls)
        self.secret = secret
        self.accepted: dict[str, Any] = {}  # idempotency key -> document
        self.refused: list[Seen] = []
        self.replayed: list[str] = []  # idempotency keys that came again, signed: a message sent twice

    def answer(self, seen: Seen) -> Answer:
        if seen.method != "POST":
            return Answer(405, b"POST only", {"Allow": "POST"})
        try:
            verify(self.secret, seen.headers.get("x-cartrescue-signature"), seen.body)
        except BadSignature as exc:
            self.refused.append(seen)
            return Answer(401, str(exc).encode())
        key = seen.headers.get("idempotency-key", "")
        with self.lock:
            if key not in self.accepted:
                self.accepted[key] = seen.json
            else:
                self.replayed.append(key)
        return Answer(200, b'{"ok": true}', {"Content-Type": "application/json"})


ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-" + "9" * 14


class TwilioEmulator(LoopbackHTTP):
    """The Messages API's shape (see the module docstring); ``messages`` are those it accepted."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN, *, tls: bool = False) -> None:
        super().__init__(tls=tls)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, str]] = []
        self.unsubscribed: set[str] = set()  # numbers that replied STOP to "Twilio": error 21610

    @staticmethod
    def error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Answer:
        body = json.dumps({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                           "status": status}).encode()
        return Answer(status, body, {"Content-Type": "application/json", **(headers or {})})

    def answer(self, seen: Seen) -> Answer:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if seen.headers.get("authorization") != expected:
            return self.error(401, 20003, "Authenticate")
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        if seen.method == "GET" and seen.path == base + ".json":
            return Answer(200, json.dumps({"sid": self.account_sid, "friendly_name": "Test Shop",
                                           "status": "active"}).encode(), {"Content-Type": "application/json"})
        if seen.method != "POST" or seen.path != base + "/Messages.json":
            return self.error(404, 20404, "The requested resource was not found")
        form = seen.form
        to, body = form.get("To", ""), form.get("Body", "")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return self.error(400, 21603, "A 'From' phone number is required.")
        if not to.startswith("+") or not to[1:].isdigit():
            return self.error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.unsubscribed:
            return self.error(400, 21610, "Attempt to send to unsubscribed recipient")
        if not body:
            return self.error(400, 21602, "Message body is required.")
        with self.lock:
            sid = f"SM{len(self.messages):032x}"
            self.messages.append({"sid": sid, **form})
        return Answer(201, json.dumps({"sid": sid, "status": "queued", "to": to, "body": body}).encode(),
                      {"Content-Type": "application/json"})
