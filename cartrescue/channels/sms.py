"""SMS channel: a text message per claimed envelope, through the shop's SMS provider.

Owns the two provider presets (docs/channels.md#sms) and what their answers mean:

- **twilio** -- Twilio's Messages API (and providers that copy it: ``sms.twilio.base_url``): a
  form-encoded POST of ``To``, ``From`` (or ``MessagingServiceSid``) and ``Body`` to
  ``/2010-04-01/Accounts/{AccountSid}/Messages.json`` with basic auth. 2xx is ``sent`` with the
  message's SID. Twilio's error codes decide the rest: 21610 (the number replied STOP to the
  provider) is permanent and suppresses the number; 21211/21614/21612 (not a valid, mobile or
  reachable number) permanent; 20003/20404/20005 (credentials, account) take the provider down
  for the run; 21212/21603/21606/21659/21660/21408 (the sender or the country permission: the
  shop's setup, not the customer) ``failed_transient`` without retry, so fixing it and running
  again sends; 20429/30001/21611/14107 (rate and queue limits) are retried.
- **http** -- any gateway: the body fields, their format, the auth and the success rule come
  from ``sms.http`` (``{to}``, ``{sender}``, ``{text}``, ``{id}``, ``{key}`` placeholders). Status codes
  as for the webhook; with ``success_field`` a 2xx must also say success there (one of
  ``success_values``, compared as JSON text in any case: ``true``, not ``True``; an answer
  without the field says nothing and matches no value, ``null`` included), else the
  message is ``failed_permanent`` (and ``unconfirmed`` when the answer cannot be read); without
  it any 2xx is ``sent``, ``id_field`` only picking the id out of a JSON answer.

The text and the E.164 number were made and checked before the claim (the pipeline). A request
that got no answer is ``unconfirmed``, never sent again: a text message twice costs twice and
annoys. It must not decide who gets a message nor touch the ledger.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from cartrescue.channels.base import Envelope, Outcome, Status
from cartrescue.channels.http import (
    Down,
    HttpChannel,
    HttpSettings,
    Job,
    Retry,
    Verdict,
    judge_status,
    retry_after,
    trusted,
    url_password,
)
from cartrescue.text import ascii_digits

if TYPE_CHECKING:
    import ssl

    import httpx

    from cartrescue.config import Config

UNSUBSCRIBED_AT_CARRIER = "sms: unsubscribed at the provider"  # suppression reason of Twilio's 21610

_TWILIO_SUPPRESS = frozenset({21610})
_TWILIO_ACCOUNT = frozenset({20003, 20005, 20404})
_TWILIO_SENDER = frozenset({21212, 21603, 21606, 21659, 21660, 21408})
_TWILIO_RETRY = frozenset({20429, 30001, 21611, 14107})
_PLACEHOLDER = re.compile(r"\{(to|sender|text|id|key)\}")


class Provider:
    """One provider's request and the meaning of its answers."""

    url: str

    def request(self, job: Job, to: str, text: str, key: str) -> tuple[dict[str, str], bytes]:
        """The headers and body of the request sending ``text`` to ``to``; ``key``: the
        message's id unique across shops (:attr:`Envelope.key <cartrescue.channels.base.Envelope.key>`)."""
        raise NotImplementedError

    def judge(self, job: Job, status: int, headers: "httpx.Headers", body: bytes, reply: str) -> Verdict:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        return []


class Twilio(Provider):
    def __init__(self, base_url: str, account_sid: str, auth_token: str, sender: str) -> None:
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self.token = auth_token
        self.sender = ("MessagingServiceSid", sender) if re.fullmatch(r"MG[0-9a-fA-F]{32}", sender) else ("From", sender)

    def secrets(self) -> list[str]:
        return [self.token, self.auth.split(" ", 1)[1]]

    def request(self, job: Job, to: str, text: str, key: str) -> tuple[dict[str, str], bytes]:
        body = urlencode([("To", to), self.sender, ("Body", text)]).encode("ascii")
        return {"Authorization": self.auth, "Content-Type": "application/x-www-form-urlencoded"}, body

    def judge(self, job: Job, status: int, headers: "httpx.Headers", body: bytes, reply: str) -> Verdict:
        answer = _json(body)
        if 200 <= status < 300:
            sid = answer.get("sid") if isinstance(answer, dict) else None
            state = answer.get("status") if isinstance(answer, dict) else None
            if state == "failed":
                return Outcome(job.claim_id, Status.PERMANENT, reply)
            return Outcome(job.claim_id, Status.SENT, f"{status} {state or 'accepted'} {sid or ''}".strip())
        code = answer.get("code") if isinstance(answer, dict) else None
        if code in _TWILIO_SUPPRESS:
            return Outcome(job.claim_id, Status.PERMANENT, reply, suppress=UNSUBSCRIBED_AT_CARRIER)
        if code in _TWILIO_ACCOUNT:
            return Down(f"the provider refuses the account (check sms.twilio.account_sid and auth_token): {reply}")
        if code in _TWILIO_SENDER:
            return Outcome(job.claim_id, Status.TRANSIENT, f"the shop's sender or country permission (check "
                           f"sms.sender and the provider's settings): {reply}")
        if code in _TWILIO_RETRY:
            return Retry(reply, retry_after(headers.get("retry-after")))
        return judge_status(job.claim_id, status, headers, reply)


class Gateway(Provider):
    def __init__(self, section: Any, sender: str) -> None:
        self.section = section
        self.url = section.url
        self.sender = sender
        self.headers = {"Content-Type": "application/json" if section.format == "json"
                        else "application/x-www-form-urlencoded"}
        if section.username:
            pair = f"{section.username}:{section.password}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif section.token:
            self.headers["Authorization"] = f"Bearer {section.token}"

    def secrets(self) -> list[str]:
        found = [s for s in (self.section.password, self.section.token, url_password(self.url)) if s]
        if "Authorization" in self.headers:
            found.append(self.headers["Authorization"].split(" ", 1)[1])
        from cartrescue.config import secret_key

        found += [value for name, value in self.section.fields.items() if secret_key(name)]
        return found

    def request(self, job: Job, to: str, text: str, key: str) -> tuple[dict[str, str], bytes]:
        values = {"to": to, "sender": self.sender, "text": text, "id": str(job.claim_id), "key": key}
        fields = {name: _PLACEHOLDER.sub(lambda m: values[m.group(1)], value)
                  for name, value in self.section.fields.items()}
        if self.section.format == "json":
            return self.headers, json.dumps(fields, ensure_ascii=False).encode("utf-8")
        return self.headers, urlencode(fields).encode("ascii")

    def judge(self, job: Job, status: int, headers: "httpx.Headers", body: bytes, reply: str) -> Verdict:
        verdict = judge_status(job.claim_id, status, headers, reply)
        if not (isinstance(verdict, Outcome) and verdict.status is Status.SENT):
            return verdict
        section = self.section
        answer = _json(body) if section.success_field or section.id_field else None
        if answer is None:
            if not section.success_field:  # any 2xx is success: an id is only kept when there is one
                return verdict
            return Outcome(job.claim_id, Status.UNCONFIRMED, f"the gateway's answer is not JSON; it may have sent "
                           f"the message: not resent: {reply}")
        if section.success_field:
            said = _path(answer, section.success_field, missing=_ABSENT)
            if said is _ABSENT:  # says nothing: not even a null that ``success_values: [null]`` matches
                return Outcome(job.claim_id, Status.PERMANENT, f"no {section.success_field} in the answer: {reply}")
            if not section.says_success(said):
                return Outcome(job.claim_id, Status.PERMANENT, f"{section.success_field}={said!r}: {reply}")
        found = _path(answer, section.id_field) if section.id_field else None
        return Outcome(job.claim_id, Status.SENT, f"{status} {found}" if found is not None else reply)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


_ABSENT = object()  # a path that leads nowhere in the answer, told apart from the JSON null


def _path(document: Any, path: str, missing: Any = None) -> Any:
    """``a.b.0.c`` in a JSON document (``missing`` where it leads nowhere: a gateway's null is
    a value, its missing field says nothing)."""
    for part in path.split("."):
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and ascii_digits(part) and int(part) < len(document):
            document = document[int(part)]
        else:
            return missing
    return document


class SmsChannel(HttpChannel):
    transport = "sms"
    idempotent = False

    def __init__(self, provider: Provider, settings: HttpSettings, recent: Iterable[datetime] = (),
                 name: str = "sms", tls: ssl.SSLContext | None = None) -> None:
        super().__init__(settings, secrets=provider.secrets(), recent=recent, tls=tls)
        self.provider = provider
        self.name = name

    @classmethod
    def from_config(cls, config: "Config", recent: Iterable[datetime] = (),
                    whole_per_hour: int | None = None) -> "SmsChannel":
        section = config.sms

        def need(key: str, value: Any, hint: str = "") -> None:
            if not value:
                raise config.refusal("sms." + key, f"empty; a tier or step sends text messages{hint}")

        need("sender", section.sender)
        if section.provider == "twilio":
            need("twilio.account_sid", section.twilio.account_sid)
            need("twilio.auth_token", section.twilio.auth_token, " (set it to ${TWILIO_AUTH_TOKEN})")
            provider: Provider = Twilio(section.twilio.base_url, section.twilio.account_sid, section.twilio.auth_token,
                                        section.sender)  # type: ignore[arg-type]
        else:
            need("http.url", section.http.url)
            provider = Gateway(section.http, section.sender)  # type: ignore[arg-type]
        return cls(provider, HttpSettings.from_config("sms", section, whole_per_hour), recent, section.provider,
                   trusted(config, "sms"))

    def prepare(self, envelope: Envelope) -> Job | Outcome:
        to = envelope.decision.phone
        if not to or not envelope.data:
            return Outcome(envelope.claim_id, Status.PERMANENT, "no number or no text to send")
        return Job(envelope.claim_id, (to, envelope.data.decode("utf-8"), envelope.key), self.provider.url)

    def request(self, job: Job) -> tuple[str, dict[str, str], bytes]:
        to, text, key = job.payload
        headers, body = self.provider.request(job, to, text, key)
        return "POST", headers, body

    def judge(self, job: Job, status: int, headers: "httpx.Headers", body: bytes) -> Verdict:
        return self.provider.judge(job, status, headers, body, self.describe(status, body))
