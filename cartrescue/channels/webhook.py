"""Webhook channel: one signed JSON POST per message, to the shop's own automation.

Owns turning a claimed envelope into the request (docs/channels.md#webhook): the body is the
JSON document the pipeline built before the claim (:meth:`cartrescue.pipeline.Composer.webhook_body`)
with the ledger id put first as ``"id"``; the headers carry the message's id as ``Idempotency-Key``
(:attr:`Envelope.key <cartrescue.channels.base.Envelope.key>`: the same on every retry and in
every later run, unique across shops)
and the HMAC signature of timestamp + body
(:mod:`cartrescue.signing`), made anew for each attempt. What the answer means is the shared
rule of :func:`cartrescue.channels.http.judge_status`: 2xx sent; 408, 429 (after ``Retry-After``),
5xx, timeouts and connection errors retried, then ``failed_transient``; 401/403 the receiver
refusing the signature (down for the run: fix the secret); other 4xx ``failed_permanent``. A
request that got no answer is sent again: the receiver drops a key it has seen.

It must not decide who gets a message nor touch the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from cartrescue.channels.base import Envelope, Outcome, Status
from cartrescue.channels.http import HttpChannel, HttpSettings, Job, trusted, url_password
from cartrescue.signing import HEADER, sign

if TYPE_CHECKING:
    import ssl

    from cartrescue.config import Config


class WebhookChannel(HttpChannel):
    transport = "webhook"
    idempotent = True

    def __init__(self, url: str, secret: str, settings: HttpSettings, recent: Iterable[datetime] = (),
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(settings, secrets=[secret, url_password(url)], recent=recent, tls=tls)
        self.url = url
        self.secret = secret

    @classmethod
    def from_config(cls, config: "Config", recent: Iterable[datetime] = (),
                    whole_per_hour: int | None = None) -> "WebhookChannel":
        section = config.webhook
        if not section.url:
            raise config.refusal("webhook.url", "empty; a tier or step sends on the webhook channel")
        if not section.secret:
            raise config.refusal("webhook.secret", "empty; set it to ${CARTRESCUE_WEBHOOK_SECRET} and export a long "
                                                   "random value (receivers verify the signature with it)")
        return cls(section.url, section.secret, HttpSettings.from_config("webhook", section, whole_per_hour), recent,
                   trusted(config, "webhook"))

    def prepare(self, envelope: Envelope) -> Job | Outcome:
        data = envelope.data
        if not data or not data.startswith(b"{"):
            return Outcome(envelope.claim_id, Status.PERMANENT, "no message to send")
        return Job(envelope.claim_id, (document(data, envelope.claim_id), envelope.key), self.url)

    def request(self, job: Job) -> tuple[str, dict[str, str], bytes]:
        body, key = job.payload
        return "POST", {"Content-Type": "application/json", "Idempotency-Key": key,
                        HEADER: sign(self.secret, body)}, body


def document(data: bytes, claim_id: int) -> bytes:
    """The JSON document the receiver gets: the pipeline's (``data``, an object) with the ledger
    id put first as ``"id"``. ``run --outbox`` writes this too: its files lacked the id, so a
    receiver tested with them was not tested with what it gets."""
    return b'{"id":%d,' % claim_id + data[1:] if len(data) > 2 else b'{"id":%d}' % claim_id

