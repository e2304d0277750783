"""One-click unsubscribe and the cart survey for the shop's web server: a small WSGI application
(RFC 8058 for the unsubscribe).

Mount it at the path of ``shop.unsubscribe_url`` (any WSGI server: gunicorn, uWSGI, mod_wsgi,
or ``python -m cartrescue.webhook`` behind the shop's reverse proxy)::

    # unsubscribe_wsgi.py
    from cartrescue.webhook import make_app
    application = make_app("/srv/shop/cartrescue.yaml")

What it answers, whatever the path. The token is found where ``shop.unsubscribe_url`` and
``survey.url`` put it -- under any query key (``?u={token}``) or in any path segment
(``https://shop.example.com/unsubscribe/{token}/confirm``) -- and always as ``?token=`` or a
last path segment, so links of messages sent before the URL changed keep working:

- ``POST ?token=T`` with the body ``List-Unsubscribe=One-Click`` -- what a mail client sends
  for the ``List-Unsubscribe-Post`` header -- or the confirmation form below (``token`` in the
  query or the form): the address in the token is suppressed (every cart, every step) and a
  short page says so. Repeating it is harmless.
- ``GET ?token=T`` (someone clicked the visible link): a page naming the address with one button
  that POSTs. A GET changes nothing, because mail scanners and link previews fetch every link.
  The token names the address only, so these pages speak the first language of the browser's
  ``Accept-Language`` that has words (:mod:`cartrescue.unsubscribe_words`), else the shop's
  ``default_locale``, else English.
- A forged or altered token: 400 and nothing changes. Another method: 405.
- The ledger cannot be reached (its database down, SQLite locked past its wait): a POST gets 503
  with ``Retry-After`` and a page asking to try again, nothing changes, and the server's log one line.
- The token of a ``preview`` or ``send-test`` message's link (a test link, :mod:`cartrescue.tokens`):
  GET or POST, a page saying it is a preview link, and nobody is unsubscribed.

The same app answers the survey links of the messages (``survey.url``, docs/survey.md); their
tokens are tagged ``s.``, so both can share one URL or have their own:

- ``GET ?token=S&reason=R``: a page in the customer's language with the reasons (``R`` chosen),
  an optional line of text and one button. Nothing is recorded: link scanners fetch GETs too.
- ``POST`` of that form: the answer is recorded (a later one replaces it) and a thank-you page
  shows it back, escaped. A missing or unknown reason: 400 and the form again.

Every page is plain HTML without scripts, sent with a Content-Security-Policy that allows none.

At the path of ``sms.inbound_url`` it serves the SMS provider's webhook for replies instead
(:mod:`cartrescue.inbound`: a signed STOP suppresses the number).

It must not plan or send: it only checks tokens (:mod:`cartrescue.unsubscribe`,
:mod:`cartrescue.survey`) and records suppressions (:mod:`cartrescue.suppressions`) and answers.
The ledger is opened once, on the first request.
"""

from __future__ import annotations

import html
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.exc import SQLAlchemyError

from cartrescue import survey
from cartrescue.compose.render import text_direction
from cartrescue.config import Config, load_config
from cartrescue.errors import LedgerError
from cartrescue.inbound import InboundSms
from cartrescue.ledger import Ledger
from cartrescue.suppressions import resolve, token_spots, unsubscribe, url_token
from cartrescue.tokens import tag_of
from cartrescue.unsubscribe import BadToken, PreviewToken
from cartrescue.unsubscribe_words import PAGE_WORDS

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
MAX_BODY = 64 * 1024

_PAGE = """<!doctype html>
<html lang="{lang}"{dir}><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 34em; margin: 3em auto; padding: 0 1em; line-height: 1.5">
<h1 style="font-size: 1.4em">{title}</h1>
{body}
<p style="color: #666; font-size: .9em">{shop}</p>
</body></html>
"""


# No script, no frame, no plug-in may run on these pages, whatever a value in them holds.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


def _form(environ: dict[str, Any]) -> dict[str, str]:
    """The fields of an urlencoded POST body (the first value of each), at most MAX_BODY bytes read."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return {}
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
    except ValueError:
        return {}
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    return {name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def page_locale(accept_language: str, default_locale: str) -> str:
    """The locale of an unsubscribe page: the browser's most wanted language (RFC 9110
    ``Accept-Language``) that has words, else the shop's default locale's, else ``en``. The token
    names only the address, and an English page for a Swedish reminder read as foreign mail."""
    wanted: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept_language.split(",")[:32]):
        tag, _, params = item.partition(";")
        weight = 1.0
        if params.strip().lower().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().replace("_", "-").split("-")[0]
        if weight > 0 and primary in PAGE_WORDS:
            wanted.append((-weight, index, primary))
    if wanted:
        return min(wanted)[2]
    fallback = default_locale.lower().replace("_", "-").split("-")[0]
    return fallback if fallback in PAGE_WORDS else "en"


def no_ledger_yet(config: Config) -> str | None:
    """Why the unsubscribes this server records may reach no run, when ``ledger.url`` names a
    SQLite file that is not there: the server made it, empty, and told each customer "you are
    unsubscribed" while the shop's runs read their own ledger and kept reminding (a mistyped path,
    a config other than the runs' one). A shop that serves links before its first run reads it once."""
    new = config.missing_ledger_file()
    if new is None:
        return None
    return (f"{config.where('ledger.url')}: no ledger is at {new}; the unsubscribes and answers this server "
            "records go into a new one made there, which only runs whose ledger.url names this file will see "
            "(a mistyped path? a config other than the runs' one?)")


class WebhookApp:
    """The WSGI callable; see the module docstring."""

    def __init__(self, config: Config, ledger: Ledger | None = None) -> None:
        self.config = config
        self.secret = config.shop.unsubscribe_secret
        self._ledger = ledger
        self._lock = threading.Lock()
        # Replies to text messages (STOP), at the path of sms.inbound_url: cartrescue.inbound.
        self.inbound = InboundSms(config, lambda: self.ledger) if config.sms.inbound_url else None
        # Where the configured links put the token (?u={token}, /u/{token}/confirm), read once.
        self._spots = token_spots(config.shop.unsubscribe_url, config.survey.url)

    @property
    def ledger(self) -> Ledger:
        with self._lock:
            if self._ledger is None:
                new = no_ledger_yet(self.config)
                self._ledger = self.config.open_ledger()
                if new is not None:  # said in the server's log once, as the made file is used from now on
                    print(f"cartrescue.webhook: warning: {new}", file=sys.stderr, flush=True)
            return self._ledger

    def _page(self, start_response: StartResponse, status: str, title: str, body: str,
              extra: Iterable[tuple[str, str]] = (), lang: str = "en") -> list[bytes]:
        # A page in Arabic, Hebrew, Persian… reads from the right, as the message it came from.
        direction = ' dir="rtl"' if text_direction(lang) == "rtl" else ""
        payload = _PAGE.format(title=html.escape(title), body=body, lang=html.escape(lang.replace("_", "-")),
                               dir=direction,
                               shop=html.escape(self.config.shop.name)).encode("utf-8")
        start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(payload))),
                                ("Cache-Control", "no-store"), ("X-Robots-Tag", "noindex"),
                                ("Content-Security-Policy", _CSP), ("X-Content-Type-Options", "nosniff"), *extra])
        return [payload]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.inbound is not None and self.inbound.matches(environ):
            pages = self.inbound(environ, start_response)
        else:
            try:
                pages = self._route(environ, start_response)
            except (LedgerError, SQLAlchemyError) as error:  # raised before any page was started
                pages = self._unavailable(environ, start_response, error)
        # HEAD: the headers of the GET (its Content-Length too), never a body, refusals included.
        return [] if environ.get("REQUEST_METHOD", "GET").upper() == "HEAD" else pages

    def _route(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        values = parse_qs(environ.get("QUERY_STRING", ""))
        query = {name: found[0] for name, found in values.items()}
        token = url_token(environ.get("PATH_INFO", ""), values, self._spots)
        form = _form(environ) if method == "POST" else {}
        token = token or form.get("token") or ""
        if method not in ("GET", "HEAD", "POST"):
            return self._page(start_response, "405 Method Not Allowed", "Method not allowed",
                              "<p>Use the link in the e-mail.</p>", [("Allow", "GET, HEAD, POST")])
        if tag_of(token) == survey.TAG:
            if method == "POST":
                return self._survey_post(start_response, token, form.get("reason") or query.get("reason") or "",
                                         form.get("text", ""))
            return self._survey_form(start_response, token, query.get("reason", ""))
        locale = page_locale(environ.get("HTTP_ACCEPT_LANGUAGE", ""), self.config.shop.default_locale)
        if method == "POST":
            return self._post(start_response, token, locale)
        return self._get(start_response, token, locale)

    def _said(self, start_response: StartResponse, status: str, locale: str, title: str, body: str) -> list[bytes]:
        """An unsubscribe page in ``locale`` (:func:`page_locale`): its words chosen by the request."""
        return self._page(start_response, status, title, body, [("Vary", "Accept-Language")], lang=locale)

    def _unavailable(self, environ: dict[str, Any], start_response: StartResponse, error: Exception) -> list[bytes]:
        """The ledger could not record an unsubscribe or an answer: a 503 that a mail client may
        retry and a person is told to, one line in the server's log (was the server's bare 500
        and a traceback)."""
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        environ["wsgi.errors"].write(f"cartrescue.webhook: the ledger cannot be reached: {first[:300]}\n")
        locale = page_locale(environ.get("HTTP_ACCEPT_LANGUAGE", ""), self.config.shop.default_locale)
        said = PAGE_WORDS[locale]
        return self._page(start_response, "503 Service Unavailable", said["busy_title"],
                          f"<p>{html.escape(said['busy_body'])}</p>",
                          [("Retry-After", "120"), ("Vary", "Accept-Language")], lang=locale)

    def _refuse(self, start_response: StartResponse, locale: str) -> list[bytes]:
        said = PAGE_WORDS[locale]
        return self._said(start_response, "400 Bad Request", locale, said["invalid_title"],
                          f"<p>{html.escape(said['invalid_body'])}</p>")

    def _preview_link(self, start_response: StartResponse) -> list[bytes]:
        """A genuine link of a preview, send-test or dry-run message: said so, and nobody
        unsubscribed (a developer clicking through a preview must not unsubscribe the real customer)."""
        return self._page(start_response, "200 OK", "This is a preview link",
                          "<p>This link comes from a preview or a test message (<code>cartrescue preview</code>, "
                          "<code>send-test</code>, a dry-run's <code>run --eml</code>), not from a reminder a "
                          "customer was sent: nobody was unsubscribed.</p>")

    def _get(self, start_response: StartResponse, token: str, locale: str) -> list[bytes]:
        try:
            address, _how = resolve(token, self.secret) if token and "@" not in token else ("", "")
        except PreviewToken:
            return self._preview_link(start_response)
        except (BadToken, ValueError):
            address = ""
        if not address:
            return self._refuse(start_response, locale)
        said = PAGE_WORDS[locale]
        question = html.escape(said["question"]).replace("{address}", f"<strong>{html.escape(address)}</strong>")
        body = (f"<p>{question}</p>"
                f'<form method="post"><input type="hidden" name="token" value="{html.escape(token, quote=True)}">'
                '<button type="submit" style="font-size: 1em; padding: .5em 1.2em">'
                f"{html.escape(said['button'])}</button></form>")
        return self._said(start_response, "200 OK", locale, said["title"], body)

    def _post(self, start_response: StartResponse, token: str, locale: str) -> list[bytes]:
        if not token or "@" in token:  # an address is not a token: nobody unsubscribes someone else
            return self._refuse(start_response, locale)
        try:
            done = unsubscribe(self.ledger, token, self.secret, source="webhook")
        except PreviewToken:
            return self._preview_link(start_response)
        except (BadToken, ValueError):
            return self._refuse(start_response, locale)
        said = PAGE_WORDS[locale]
        return self._said(start_response, "200 OK", locale, said["done_title"],
                          f"<p>{html.escape(said['done_body']).replace('{address}', html.escape(done.email))}</p>")


    # -- the survey --------------------------------------------------------------------------

    def _survey_refuse(self, start_response: StartResponse, token: str) -> list[bytes]:
        locale = survey.claimed_locale(token)
        said = survey.words(self.config, locale)
        return self._page(start_response, "400 Bad Request", said["invalid_title"],
                          f"<p>{html.escape(said['invalid_body'])}</p>", lang=survey.page_locale(self.config, locale))

    def _survey_form(self, start_response: StartResponse, token: str, chosen: str, *,
                     status: str = "200 OK", text: str = "", notice: str = "") -> list[bytes]:
        try:
            asked = survey.read_token(token, self.secret)
        except BadToken:
            return self._survey_refuse(start_response, token)
        said = survey.words(self.config, asked.locale)
        options = "".join(
            f'<p style="margin:.4em 0"><label><input type="radio" name="reason" value="{html.escape(code, quote=True)}"'
            f'{" checked" if code == chosen else ""}> {html.escape(said[code])}</label></p>'
            for code in self.config.survey.reasons)
        line = ""
        if self.config.survey.free_text:
            line = (f'<p><label>{html.escape(said["text_label"])}<br><input type="text" name="text" '
                    f'maxlength="{survey.MAX_TEXT}" value="{html.escape(text, quote=True)}" '
                    'style="width:100%; font-size:1em; padding:.3em"></label></p>')
        warning = f'<p role="alert" style="color:#b91c1c">{html.escape(notice)}</p>' if notice else ""
        body = (f"<p>{html.escape(said['page_intro'])}</p>{warning}"
                f'<form method="post" accept-charset="utf-8"><input type="hidden" name="token" '
                f'value="{html.escape(token, quote=True)}">{options}{line}'
                f'<p><button type="submit" style="font-size: 1em; padding: .5em 1.2em">{html.escape(said["button"])}'
                "</button></p></form>")
        return self._page(start_response, status, said["page_title"], body,
                          lang=survey.page_locale(self.config, asked.locale))

    def _survey_post(self, start_response: StartResponse, token: str, reason: str, text: str) -> list[bytes]:
        try:
            answer = survey.record(self.ledger, self.config, token, reason, text)
        except BadToken:
            return self._survey_refuse(start_response, token)
        except ValueError:  # no reason chosen, or one this survey does not offer
            locale = survey.claimed_locale(token)
            return self._survey_form(start_response, token, "", status="400 Bad Request", text=survey.clean_text(text),
                                     notice=survey.words(self.config, locale)["choose"])
        said = survey.words(self.config, answer.token.locale)
        body = (f"<p>{html.escape(said['thanks_body'])}</p>"
                f"<p>{html.escape(said['your_answer'])} <strong>{html.escape(said[answer.reason])}</strong></p>")
        if answer.text:
            body += f"<p>{html.escape(said['your_comment'])} {html.escape(answer.text)}</p>"
        if self.config.survey.stops_sequence:
            body += f"<p>{html.escape(said['thanks_stop'])}</p>"
        return self._page(start_response, "200 OK", said["thanks_title"], body,
                          lang=survey.page_locale(self.config, answer.token.locale))


def make_app(config: Config | str | Path, *, ledger: Ledger | None = None) -> WSGIApp:
    """The WSGI app for ``config`` (a loaded config or the path of the YAML file)."""
    if not isinstance(config, Config):
        config = load_config(config)
    if not config.shop.unsubscribe_secret:
        raise config.refusal("shop.unsubscribe_secret", "empty; the webhook cannot check tokens without it")
    return WebhookApp(config, ledger)


#: Seconds ``python -m cartrescue.webhook`` waits on a connection that sends nothing before closing it.
IDLE_TIMEOUT = 30

#: Connections ``python -m cartrescue.webhook`` lets the kernel queue before it accepts them.
#: socketserver's default of 5 reset the rest of a burst (a mailing's one-click POSTs arriving
#: together, a proxy opening connections at once): those unsubscribes were lost.
BACKLOG = 128


def _port(text: str) -> int:
    """``--port``'s value: a TCP port, checked here so that a mistyped one (``70000``) is a usage
    error naming the option, not the ``OverflowError`` traceback ``bind()`` raises for it."""
    import argparse

    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, 0 to 65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number, 0 to 65535, got {port}")
    return port


def _family(host: str) -> int:
    """The address family ``--host`` listens on: ``::1``, ``::`` or a name only IPv6 resolves
    was refused (``Address family for hostname not supported``), as wsgiref listens on IPv4 only;
    a proxy on this machine may connect to ``[::1]``. A host that does not resolve is left to
    ``bind()``, whose error names it."""
    import socket

    try:
        return int(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0])
    except (socket.gaierror, UnicodeError, IndexError):
        return int(socket.AF_INET)


def main(argv: list[str] | None = None) -> None:
    """``python -m cartrescue.webhook --config FILE [--host 127.0.0.1] [--port 8025]`` (wsgiref).

    One thread per connection, each given up after :data:`IDLE_TIMEOUT` seconds of silence:
    wsgiref's own server took one at a time, without a timeout, so a connection that sent nothing
    (a browser's preconnection, a stalled client) held up every unsubscribe until it closed."""
    import argparse
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        request_queue_size = BACKLOG

    class Handler(WSGIRequestHandler):
        timeout = IDLE_TIMEOUT

        def handle(self) -> None:
            try:
                super().handle()
            except TimeoutError:  # silent for IDLE_TIMEOUT: one log line, not socketserver's traceback
                self.log_error("connection closed: the request timed out after %s s", IDLE_TIMEOUT)
                self.close_connection = True

    parser = argparse.ArgumentParser(prog="python -m cartrescue.webhook",
                                     description="Serve one-click unsubscribes and survey answers "
                                                 "(put it behind the shop's HTTPS proxy).")
    parser.add_argument("--config", "-c", default="cartrescue.yaml", metavar="FILE",
                        help="the shop's config (default: ./cartrescue.yaml)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default: 127.0.0.1, for the proxy on this machine)")
    parser.add_argument("--port", type=_port, default=8025,
                        help="the port to listen on, 0 to 65535 (default: 8025; 0: any free port)")
    args = parser.parse_args(argv)
    from cartrescue.errors import CartrescueError

    try:
        app = make_app(args.config)
    except CartrescueError as error:  # the config's error in one line, as `cartrescue run` says it: no traceback
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(int(error.exit_code)) from None
    Threaded.address_family = _family(args.host)  # type: ignore[assignment]
    try:
        server = make_server(args.host, args.port, app, server_class=Threaded, handler_class=Handler)
    except OSError as error:  # the port taken (a running server), a host not of this machine: one line
        print(f"error: cannot listen on {args.host}:{args.port} (--host, --port): {error.strerror or error}",
              file=sys.stderr)
        raise SystemExit(2) from None
    new = no_ledger_yet(app.config)  # type: ignore[attr-defined]
    if new is not None:  # at the start, where the person starting the server reads it
        print(f"warning: {new}", file=sys.stderr, flush=True)
    with server:
        host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address, as a URL writes it
        print(f"serving unsubscribes and survey answers on http://{host}:{server.server_port}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
