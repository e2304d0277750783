"""One-click unsubscribe for the shop's web server: a small WSGI application (RFC 8058).

Mount it at the path of ``shop.unsubscribe_url`` (any WSGI server: gunicorn, uWSGI, mod_wsgi,
or ``python -m cartrescue.webhook`` behind the shop's reverse proxy)::

    # unsubscribe_wsgi.py
    from cartrescue.webhook import make_app
    application = make_app("/srv/shop/cartrescue.yaml")

What it answers, whatever the path (the token may also be its last segment, for an
``unsubscribe_url`` like ``https://shop.example.com/unsubscribe/{token}``):

- ``POST ?token=T`` with the body ``List-Unsubscribe=One-Click`` -- what a mail client sends
  for the ``List-Unsubscribe-Post`` header -- or the confirmation form below (``token`` in the
  query or the form): the address in the token is suppressed (every cart, every step) and a
  short page says so. Repeating it is harmless.
- ``GET ?token=T`` (someone clicked the visible link): a page naming the address with one button
  that POSTs. A GET changes nothing, because mail scanners and link previews fetch every link.
- A forged or altered token: 400 and nothing changes. Another method: 405.

It must not plan or send: it only checks tokens (:mod:`cartrescue.unsubscribe`) and records
suppressions (:mod:`cartrescue.suppressions`). The ledger is opened once, on the first request.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cartrescue.config import Config, load_config
from cartrescue.ledger import Ledger
from cartrescue.suppressions import resolve, unsubscribe
from cartrescue.unsubscribe import BadToken

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
MAX_BODY = 64 * 1024

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 34em; margin: 3em auto; padding: 0 1em; line-height: 1.5">
<h1 style="font-size: 1.4em">{title}</h1>
{body}
<p style="color: #666; font-size: .9em">{shop}</p>
</body></html>
"""


def _form_token(environ: dict[str, Any]) -> str | None:
    """The ``token`` field of an urlencoded POST body, if there is one."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return None
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
    except ValueError:
        return None
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    values = parse_qs(body.decode("utf-8", "replace"))
    return (values.get("token") or [None])[0]


class UnsubscribeApp:
    """The WSGI callable; see the module docstring."""

    def __init__(self, config: Config, ledger: Ledger | None = None) -> None:
        self.config = config
        self.secret = config.shop.unsubscribe_secret
        self._ledger = ledger
        self._lock = threading.Lock()

    @property
    def ledger(self) -> Ledger:
        with self._lock:
            if self._ledger is None:
                self._ledger = Ledger(self.config.ledger_url)
            return self._ledger

    def _page(self, start_response: StartResponse, status: str, title: str, body: str,
              extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
        payload = _PAGE.format(title=html.escape(title), body=body,
                               shop=html.escape(self.config.shop.name)).encode("utf-8")
        start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(payload))),
                                ("Cache-Control", "no-store"), ("X-Robots-Tag", "noindex"), *extra])
        return [payload]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        query = parse_qs(environ.get("QUERY_STRING", ""))
        token = (query.get("token") or [None])[0]
        if token is None:  # unsubscribe_url: https://shop.example.com/unsubscribe/{token}
            last = environ.get("PATH_INFO", "").rstrip("/").rsplit("/", 1)[-1]
            token = last if "." in last else None
        if method == "POST":
            form_token = _form_token(environ)
            return self._post(start_response, token or form_token or "")
        if method in ("GET", "HEAD"):
            return self._get(start_response, token or "", head=method == "HEAD")
        return self._page(start_response, "405 Method Not Allowed", "Method not allowed",
                          "<p>Use the link in the e-mail.</p>", [("Allow", "GET, HEAD, POST")])

    def _refuse(self, start_response: StartResponse) -> list[bytes]:
        return self._page(start_response, "400 Bad Request", "This unsubscribe link is not valid",
                          "<p>The link may have been shortened or changed. Use the link from the e-mail "
                          "as it is, or reply to the e-mail and ask to be unsubscribed.</p>")

    def _get(self, start_response: StartResponse, token: str, head: bool) -> list[bytes]:
        try:
            address, _how = resolve(token, self.secret) if token and "@" not in token else ("", "")
        except (BadToken, ValueError):
            address = ""
        if not address:
            return self._refuse(start_response)
        body = (f"<p>Stop reminders about your shopping cart to <strong>{html.escape(address)}</strong>?</p>"
                f'<form method="post"><input type="hidden" name="token" value="{html.escape(token, quote=True)}">'
                '<button type="submit" style="font-size: 1em; padding: .5em 1.2em">Unsubscribe</button></form>')
        result = self._page(start_response, "200 OK", "Unsubscribe", body)
        return [] if head else result

    def _post(self, start_response: StartResponse, token: str) -> list[bytes]:
        if not token or "@" in token:  # an address is not a token: nobody unsubscribes someone else
            return self._refuse(start_response)
        try:
            done = unsubscribe(self.ledger, token, self.secret, source="webhook")
        except (BadToken, ValueError):
            return self._refuse(start_response)
        return self._page(start_response, "200 OK", "You are unsubscribed",
                          f"<p>{html.escape(done.email)} will get no more cart reminders from us.</p>")


def make_app(config: Config | str | Path, *, ledger: Ledger | None = None) -> WSGIApp:
    """The WSGI app for ``config`` (a loaded config or the path of the YAML file)."""
    if not isinstance(config, Config):
        config = load_config(config)
    if not config.shop.unsubscribe_secret:
        from cartrescue.errors import ConfigError

        raise ConfigError("shop.unsubscribe_secret: empty; the webhook cannot check tokens without it")
    return UnsubscribeApp(config, ledger)


def main(argv: list[str] | None = None) -> None:
    """``python -m cartrescue.webhook --config FILE [--host 127.0.0.1] [--port 8025]`` (wsgiref)."""
    import argparse
    from wsgiref.simple_server import make_server

    parser = argparse.ArgumentParser(description="Serve one-click unsubscribes (put it behind the shop's HTTPS proxy).")
    parser.add_argument("--config", "-c", default="cartrescue.yaml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    with make_server(args.host, args.port, make_app(args.config)) as server:
        print(f"serving unsubscribes on http://{args.host}:{server.server_port}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
