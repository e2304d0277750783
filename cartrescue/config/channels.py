"""The delivery sections: ``smtp``, ``webhook``, ``sms`` (Twilio or an HTTP gateway),
``call_list`` and ``outbox``, with the URL checks they share.

Apart from the sections that decide what is sent: these only say how it goes out.
"""

import json
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from cartrescue.sms_text import MAX_SEGMENTS
from cartrescue.config.eligibility import ConsentPolicy, QuietHours
from cartrescue.config.types import (
    Backoff,
    OptionalEmail,
    Timeout,
    country_code,
    Model,
    norway,
)


class CallListConfig(Model):
    path: Path = Path("call-list.csv")  # relative to the config file


class OutboxConfig(Model):
    """Accepted for configs written before ``run --outbox`` always took its DIR; only a Python
    caller of :func:`cartrescue.job.run_job` without ``outbox`` still falls back to it."""

    path: Path | None = None


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (no DNS lookup: a name is loopback only if it says so)."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


#: What ``smtp.helo_name`` may be, in its IDNA form: a host name (labels of letters, digits, ``-``
#: and ``_``, which some hosts' names have) or an address literal (``[192.0.2.25]``, ``[IPv6:…]``).
_EHLO_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[A-Za-z0-9:.]+\]")


def _ehlo_wire(name: str | None) -> str | None:
    """``smtp.helo_name`` as EHLO gives it, in its IDNA form (empty: the default name). The
    command is ASCII (RFC 5321): a name in another script (``mail.bücher.example``) stopped each
    sending run with an internal error, and one with a space failed every message at the relay's
    door."""
    if not name:
        return name
    from cartrescue.contacts import ascii_domain

    wire = ascii_domain(name)
    if wire is None or not _EHLO_NAME.fullmatch(wire):
        raise ValueError(f"expected a host name like mail.shop.example (or an address in brackets, "
                         f"[192.0.2.25]), got {name!r}")
    return wire


class SmtpConfig(Model):
    """The relay ``run --send`` delivers to (see docs/sending.md). Secrets come from ``${ENV}``."""

    host: str = "localhost"
    port: int | None = Field(None, ge=1, le=65535)  # None: 587 (starttls), 465 (tls), 25 (none)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None  # use ${SMTP_PASSWORD}; never write the password into the file
    ca_file: Path | None = None  # a private relay's CA (PEM), relative to the config file
    verify: bool = True  # verify the relay's certificate and name; false only for a private test relay
    allow_plain_remote: bool = False  # security none to a host that is not loopback needs this
    helo_name: Annotated[str | None, AfterValidator(_ehlo_wire)] = None  # EHLO's (default: SmtpSettings.ehlo_name)
    envelope_from: OptionalEmail = None  # MAIL FROM / bounce address (default: shop.from_email)
    pool_size: int = Field(8, ge=1, le=64)  # concurrent connections, each reused for many messages
    rate_per_second: float | None = Field(None, gt=0)  # None: as fast as the relay takes them
    rate_per_hour: int | None = Field(None, gt=0)  # a rolling hour, counted across runs via the ledger
    retries: int = Field(3, ge=0, le=10)  # in-run retries of a transient failure (4xx, connection, TLS)
    backoff: Backoff = timedelta(seconds=1)  # wait before the first retry; doubles each time; 0: at once
    backoff_max: Backoff = timedelta(seconds=30)
    timeout: Timeout = timedelta(seconds=30)  # connecting (TLS, AUTH) and the replies to MAIL, RCPT, DATA
    # The reply after the whole message (RFC 5321 4.5.3.2: 10 minutes); none in time: "unconfirmed".
    data_timeout: Timeout = timedelta(minutes=10)
    pipelining: bool = True  # MAIL, RCPT and DATA in one write when the relay offers PIPELINING

    @field_validator("host")
    @classmethod
    def _a_host(cls, value: str) -> str:
        """The relay's name or address as the resolver takes it. ``smtp.example.com:587``, a
        blank one (``${SMTP_HOST:-}``) or one with a space was taken, and every message of every
        run failed ``failed_transient`` at the lookup, retried for ever."""
        name, colon, port = value.rpartition(":")
        if colon and port.isdigit() and name and ":" not in name:
            raise ValueError(f"the port goes under smtp.port, not in the host name: write host: {name} and "
                             f"port: {port}")
        if not value.strip() or "://" in value or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"expected the relay's host name or address, like smtp.example.com or 192.0.2.25, "
                             f"got {value!r}")
        return value

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]

    @model_validator(mode="after")
    def _safe(self) -> "SmtpConfig":
        if self.security == "none" and not self.allow_plain_remote and not is_loopback_host(self.host):
            raise ValueError(
                f"security none to {self.host!r} would send mail and the password in clear text; use starttls or "
                "tls, or set allow_plain_remote: true for a relay on a trusted network"
            )
        if self.username and not self.password:
            raise ValueError("username given without password (set password: ${SMTP_PASSWORD})")
        if self.password and not self.username:
            raise ValueError("password given without username")
        if self.backoff_max < self.backoff:
            raise ValueError("backoff_max must not be below backoff")
        return self


def _http_url(value: str | None, allow_plain_remote: bool, key: str) -> None:
    """An ``https://`` URL, or ``http://`` to loopback (or anywhere with ``allow_plain_remote``)."""
    if value is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key}: expected an http(s) URL like https://hooks.example.com/cart, got {redacted(value)!r}")
    if parts.scheme == "http" and not allow_plain_remote and not is_loopback_host(parts.hostname):
        raise ValueError(f"{key}: http:// to {parts.hostname!r} would send customer data and the signature in clear "
                         "text; use https, or set allow_plain_remote: true for a trusted network")


def redacted(url: str) -> str:
    """``url`` without its user info and query (where tokens hide): safe in any message."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else "(not a URL)"


class HttpDelivery(Model):
    """How an HTTP channel (webhook, SMS) delivers: concurrency, pace, retries, as for SMTP."""

    concurrency: int = Field(8, ge=1, le=128)  # requests in flight at once (each claimed when it starts)
    rate_per_second: float | None = Field(None, gt=0)  # None: as fast as the endpoint answers
    rate_per_hour: int | None = Field(None, gt=0)  # a rolling hour, counted across runs via the ledger
    retries: int = Field(3, ge=0, le=10)  # in-run retries of 408, 429, 5xx, timeouts and connection errors
    backoff: Backoff = timedelta(seconds=1)  # wait before the first retry; doubles; a Retry-After wins; 0: at once
    backoff_max: Backoff = timedelta(seconds=30)
    timeout: Timeout = timedelta(seconds=10)  # per request (connect, send, answer)
    allow_plain_remote: bool = False  # http:// to a host that is not loopback needs this
    ca_file: Path | None = None  # a private receiver's CA (PEM), relative to the config file; else certifi's CAs

    @model_validator(mode="after")
    def _backoff_order(self) -> "HttpDelivery":
        if self.backoff_max < self.backoff:
            raise ValueError("backoff_max must not be below backoff")
        return self


class WebhookConfig(HttpDelivery):
    """The ``webhook`` channel: one signed JSON POST per message (docs/channels.md#webhook)."""

    url: str | None = None  # where each message is POSTed (the shop's automation, a messenger bot)
    secret: str = ""  # HMAC-SHA256 key of the signature header: use ${CARTRESCUE_WEBHOOK_SECRET}

    @model_validator(mode="after")
    def _url(self) -> "WebhookConfig":
        _http_url(self.url, self.allow_plain_remote, "url")
        return self


class TwilioConfig(Model):
    """Twilio's Messages API (or a provider that speaks it: ``base_url``)."""

    account_sid: str = ""  # AC...
    auth_token: str = ""  # use ${TWILIO_AUTH_TOKEN}; also checks the signature of inbound replies
    base_url: str = "https://api.twilio.com"  # another Twilio-compatible API (or a local emulator)


def _json_text(value: Any) -> str:
    """A string as itself, anything else as JSON writes it (``true``, ``null``, ``1.5``): one text
    for what a YAML config and a JSON answer each typed their own way."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


class HttpGatewayConfig(Model):
    """Any SMS gateway with an HTTP API: the request and the success rule described here."""

    url: str | None = None  # where each SMS is POSTed
    format: Literal["form", "json"] = "form"  # the body: form-encoded or a JSON object
    # Body fields: name -> value with placeholders {to} (E.164), {sender}, {text}, {key} (the message's
    # id, unique across shops: de-duplicate on it), {id} (ledger id, counted from 1 in each ledger)
    fields: dict[str, str] = Field(default_factory=lambda: {"to": "{to}", "from": "{sender}", "text": "{text}"})
    username: str | None = None  # basic auth user (with password)
    password: str | None = None  # use ${SMS_GATEWAY_PASSWORD}
    token: str | None = None  # sent as "Authorization: Bearer ...": use ${SMS_GATEWAY_TOKEN}
    success_field: str | None = None  # dotted path in the JSON answer that says whether it worked, e.g. status
    success_values: list[str] = Field(default_factory=list)  # what that field says on success, e.g. [ok, queued, true]
    id_field: str | None = None  # dotted path of the gateway's message id, kept in the ledger's reply
    inbound_secret: str = ""  # HMAC key the gateway (or your relay) signs inbound replies with
    inbound_from: str = "from"  # inbound reply: the field with the sender's number
    inbound_text: str = "text"  # ... with the message text
    inbound_id: str = "id"  # ... with the gateway's id of the reply (replays are refused by it)

    @field_validator("success_values", mode="before")
    @classmethod
    def _as_json_text(cls, values: Any) -> Any:
        """YAML's ``[true, 1]`` as the text a JSON answer's scalars are compared in."""
        return [_json_text(value) for value in values] if isinstance(values, list) else values

    def says_success(self, said: Any) -> bool:
        """Does ``said`` (the answer's ``success_field``) say success? Compared as JSON text,
        in any case: ``{"success": true}`` is ``true``, not Python's ``True``, and a shop may
        have written either in ``success_values``. ``said`` is a value the answer holds: an
        answer without the field says nothing, not null, and the channel never asks here."""
        return _json_text(said).casefold() in {value.casefold() for value in self.success_values}

    @model_validator(mode="after")
    def _consistent(self) -> "HttpGatewayConfig":
        if self.success_values and not self.success_field:
            raise ValueError("success_values needs success_field (where the answer says it)")
        if self.success_field and not self.success_values:  # nothing matches no value: every text "failed"
            raise ValueError(f"success_field needs success_values (what {self.success_field} says on success, "
                             "e.g. [ok, queued] or [true]), or no success_field: any 2xx is success")
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password go together (basic auth)")
        return self


def _default_sms_quiet() -> QuietHours:
    return QuietHours(start=time(20, 0), end=time(9, 0))


#: The most characters of an alphanumeric sender (GSM 03.40's originator address: 11).
MAX_SENDER_NAME = 11


class SmsConfig(HttpDelivery):
    """The ``sms`` channel (docs/channels.md#sms)."""

    concurrency: int = Field(4, ge=1, le=128)
    provider: Literal["twilio", "http"] = "twilio"
    sender: str | None = None  # From: a number (+46701234567), a sender name, or a Twilio MessagingServiceSid (MG...)
    default_region: str | None = None  # region of numbers without +country code; null = shop.country
    countries: list[str] = Field(default_factory=list)  # send only to numbers of these countries ([] = any)
    consent: ConsentPolicy = "required"  # SMS consent (sms_consent), apart from e-mail's
    quiet_hours: QuietHours | None = Field(default_factory=_default_sms_quiet)  # on top of eligibility.quiet_hours
    # recipient: quiet_hours on the clock of the number's timezone (+1 212 -> New York), in each of
    # them where its plan spans several (a Russian mobile); the shop's where the plan names none
    # and with shop
    quiet_hours_zone: Literal["recipient", "shop"] = "recipient"
    max_segments: int = Field(3, ge=1, le=MAX_SEGMENTS)  # longer texts are a render error (templates check shows them)
    link_tags: bool = False  # the UTM tags of links: on links in texts too (~66 characters each: a segment in UCS-2)
    inbound_url: str | None = None  # the public URL your provider posts replies to (STOP); null = no inbound
    twilio: TwilioConfig = TwilioConfig()
    http: HttpGatewayConfig = HttpGatewayConfig()

    @field_validator("default_region", "countries", mode="before")
    @classmethod
    def _not_false(cls, value: Any) -> Any:
        return norway(value)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        """A sender name (one with a letter, not a Twilio MessagingServiceSid) fits the 11
        characters of an SMS header: a longer one was taken, and the provider refused every text
        (Twilio 21212), transient run after run."""
        if value and any(char.isalpha() for char in value) and not re.fullmatch(r"MG[0-9a-fA-F]{32}", value) \
                and len(value) > MAX_SENDER_NAME:
            raise ValueError(f"{value!r} is {len(value)} characters: a sender name has at most {MAX_SENDER_NAME} "
                             "(the SMS header's limit; providers refuse a longer one), e.g. "
                             f"{value.replace(' ', '')[:MAX_SENDER_NAME]!r}, or give a number in E.164 (+46701234567)")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return country_code(value)

    @field_validator("countries")
    @classmethod
    def _regions(cls, values: list[str]) -> list[str]:
        return [country_code(value) or "" for value in values]

    @model_validator(mode="after")
    def _urls(self) -> "SmsConfig":
        _http_url(self.http.url, self.allow_plain_remote, "http.url")
        _http_url(self.twilio.base_url, self.allow_plain_remote, "twilio.base_url")
        return self
