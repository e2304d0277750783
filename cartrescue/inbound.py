"""Inbound text messages: the provider's webhook for replies, where STOP suppresses the number.

Owns the endpoint a shop registers with its SMS provider as the URL for incoming messages
(``sms.inbound_url``), served by the WSGI app of :mod:`cartrescue.webhook` on that path:

- The request must carry the provider's signature, checked before anything else: Twilio's
  ``X-Twilio-Signature`` (base64 HMAC-SHA1, under the account's auth token, of the URL as
  configured followed by every POST field's name and value, sorted by name), or for the generic
  gateway ``X-Cartrescue-Signature`` (:mod:`cartrescue.signing`, under ``sms.http.inbound_secret``).
  A missing or wrong signature (or another Twilio account's message) is 403 and changes nothing.
- Each message is kept by its provider id (Twilio's ``MessageSid``) in ``cr_inbound``, together
  with what it did: the same id again is a replay, refused with 409 and changing nothing (so an
  old STOP cannot undo a suppression lifted since).
- A reply that is an opt-out keyword of any shipped language (:func:`cartrescue.sms_text.is_opt_out`:
  STOP, STOPP, СТОП, ...) suppresses the number's hash: no channel messages that number or a
  cart with it again. Any other reply is recorded as ``ignored``.
- The sender's number is read as the outbound side reads it, so that its hash matches
  (:func:`cartrescue.contacts.normalize_sender`: in the shop's region, as international without
  its ``+``, in ``sms.countries``; a ``+`` that form decoding made a space is restored). An
  opt-out from a number that still cannot be read is 422 and recorded nowhere: it claims no
  opt-out it did not make, and the provider's retry after the config is fixed is no replay.
- The answer is an empty TwiML ``<Response/>`` for Twilio (nothing is texted back: Twilio's own
  opt-out confirmation does that), JSON for the gateway.

It must not plan or send; it records inbound messages and suppressions in the ledger.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cartrescue.config import Config
from cartrescue.contacts import normalize_sender, phone_hash
from cartrescue.ledger import Ledger
from cartrescue.signing import HEADER, BadSignature, same, verify
from cartrescue.sms_text import is_opt_out

StartResponse = Callable[..., Any]
MAX_BODY = 64 * 1024
STOPPED = "sms stop"  # the suppression reason of an opt-out reply
UNREADABLE = (b"refused: the sender's number is no phone number in sms.default_region (or shop.country), in E.164 "
              b"or in sms.countries: nothing was suppressed or recorded; send it again once it can be read\n")
TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(token, url + name1 + value1 + ...)), the POST
    fields sorted by name (and value, for a name given twice)."""
    data = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()).decode()


class InboundSms:
    """The WSGI handler of ``sms.inbound_url``; see the module docstring."""

    def __init__(self, config: Config, ledger: Callable[[], Ledger]) -> None:
        self.config = config
        self.sms = config.sms
        self.url = config.sms.inbound_url or ""
        self.path = urlsplit(self.url).path.rstrip("/")
        self._ledger = ledger

    def matches(self, environ: dict[str, Any]) -> bool:
        """Is this request for the inbound endpoint (its path ends like ``sms.inbound_url``'s)?"""
        path = environ.get("PATH_INFO", "").rstrip("/")
        return bool(self.path) and (path == self.path or path.endswith("/" + self.path.rsplit("/", 1)[-1]))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() != "POST":
            return _answer(start_response, "405 Method Not Allowed", b"POST only\n", "text/plain", [("Allow", "POST")])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            return _answer(start_response, "413 Content Too Large", b"too large\n", "text/plain")
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        if self.sms.provider == "twilio":
            verified = self._twilio(environ, body)
        else:
            verified = self._gateway(environ, body)
        if isinstance(verified, str):
            return _answer(start_response, "403 Forbidden", f"refused: {verified}\n".encode(), "text/plain")
        provider_id, number, text = verified
        if not provider_id:
            return _answer(start_response, "400 Bad Request", b"no message id\n", "text/plain")
        phone = normalize_sender(number, self.config.phone_region, self.sms.countries)
        stop = is_opt_out(text)
        if stop and phone is None:  # recorded, it would suppress nothing and refuse a retry as a replay
            return _answer(start_response, "422 Unprocessable Content", UNREADABLE, "text/plain")
        hashed = phone_hash(phone) if phone else ""
        fresh = self._ledger().inbound(provider_id, hashed, "suppressed" if stop else "ignored",
                                       STOPPED if stop else None, f"sms reply {provider_id}")
        if not fresh:
            return _answer(start_response, "409 Conflict", b"refused: this message was received before (a replay)\n",
                           "text/plain")
        if self.sms.provider == "twilio":
            return _answer(start_response, "200 OK", TWIML_EMPTY, "text/xml")
        return _answer(start_response, "200 OK", json.dumps({"ok": True, "opt_out": stop}).encode(), "application/json")

    def _twilio(self, environ: dict[str, Any], body: bytes) -> tuple[str, str, str] | str:
        token = self.sms.twilio.auth_token
        unset = self.config.unset_env.get("sms.twilio.auth_token")
        if unset:  # its ${NAME} placeholder is no key: anyone who knows the convention could sign with it
            return f"sms.twilio.auth_token: environment variable {unset} is not set: nothing can be verified"
        if not token:
            return "sms.twilio.auth_token is not set: nothing can be verified"
        params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        url = self.url
        query = environ.get("QUERY_STRING", "")
        if query and "?" not in url:
            url = f"{url}?{query}"
        given = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
        if not given or not same(twilio_signature(token, url, params), given):
            return "the X-Twilio-Signature does not match (is sms.inbound_url the URL configured at Twilio?)"
        fields = dict(params)
        if fields.get("AccountSid") != self.sms.twilio.account_sid:
            return "a message for another account"
        return fields.get("MessageSid") or fields.get("SmsSid") or "", fields.get("From", ""), fields.get("Body", "")

    def _gateway(self, environ: dict[str, Any], body: bytes) -> tuple[str, str, str] | str:
        section = self.sms.http
        try:
            verify(section.inbound_secret, environ.get("HTTP_" + HEADER.upper().replace("-", "_")), body)
        except BadSignature as exc:
            return str(exc)
        if environ.get("CONTENT_TYPE", "").startswith("application/json"):
            try:
                document = json.loads(body)
            except ValueError:
                return "the body is not JSON"
            fields = {str(k): str(v) for k, v in document.items()} if isinstance(document, dict) else {}
        else:
            fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            fields[section.inbound_from] = _plus_restored(fields.get(section.inbound_from, ""))
        return fields.get(section.inbound_id, ""), fields.get(section.inbound_from, ""), fields.get(section.inbound_text, "")


def _plus_restored(number: str) -> str:
    """``number`` with the ``+`` a form decoding made a space of: a gateway that sends
    ``from=+4791234567`` unescaped means ``+47...``, which form rules read as `` 47...``."""
    rest = number.lstrip(" ")
    return "+" + rest if rest != number and rest[:1].isdigit() else number


def _answer(start_response: StartResponse, status: str, payload: bytes, kind: str,
            extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    start_response(status, [("Content-Type", f"{kind}; charset=utf-8"), ("Content-Length", str(len(payload))),
                            ("Cache-Control", "no-store"), *extra])
    return [payload]
