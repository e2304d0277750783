"""``send-test``: one rendered reminder to the shop's own address, through the configured channel.

Owns choosing the cart (the one asked for; else the first cart a run would message now; else
the first cart with items; else a built-in sample), composing its message exactly as a run
would (:func:`cartrescue.preview.compose`) but addressed to the owner, marking it as a test
(subject ``[test] …``, its own Message-ID, an ``X-Cartrescue-Test`` header), handing it to a
channel (``deliver``, the seam every run uses) and recording it in ``cr_send_test``.

It must never claim a step: nothing is written to ``cr_message``, no incentive code is
allocated (a per-recipient code shows its placeholder), and the cart's own customer is never
addressed. Planning, one message a day, quotas, reports and ``doctor`` never see a test.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from cartrescue.config import Config
from cartrescue.errors import ConfigError
from cartrescue.model import Action, Cart, Decision, Order, OutgoingMessage, Reason
from cartrescue.sources.base import Activity, CartSource, Window

if TYPE_CHECKING:
    from cartrescue.channels.base import Channel

SUBJECT_MARK = "[test] "
SAMPLE_ID = "built-in"  # the sample cart's id: its key is sample:built-in


@dataclass(frozen=True, slots=True)
class SendTestResult:
    test_id: int
    to: str
    cart_id: str  # "" for the sample cart
    origin: str  # "cart" (asked for), "due" (a run would send it now), "source" (first with items), "sample"
    step: int
    variant: str | None
    subject: str
    transport: str
    status: str
    reply: str
    message_id: str
    # Why a run would not send this step to the cart (a skipped cart, a done step); never of the
    # built-in sample, which is no customer's cart and which no run plans.
    note: str | None = None
    locale: str = ""  # the locale whose templates rendered it (``--locale`` may fall back)
    locale_fallback: str | None = None  # the note that ``--locale`` fell back, as `preview` says it
    variant_fallback: str | None = None  # the note that the variant has no files in that locale, as `preview` says it

    @property
    def sent(self) -> bool:
        return self.status == "sent"


class _Given(CartSource):
    """The built-in sample cart as a source, so the real planner picks its tier."""

    name = "sample"

    def __init__(self, carts: Sequence[Cart]) -> None:
        super().__init__()
        self.given = list(carts)

    def carts(self, window: Window) -> Iterator[Cart]:
        return iter(self.given)

    def activity(self, window: Window) -> Iterator[Activity]:
        return iter(())

    def orders_for(self, carts: Sequence[Cart]) -> Iterator[Order]:
        return iter(())


def choose(config: Config, now: datetime, cart_id: str | None, *, sample: bool = False) -> tuple[Decision, str]:
    """The decision to render and where the cart came from (see :class:`SendTestResult`)."""
    from cartrescue.preview import find_decision

    if sample:
        return _sample(config, now), "sample"
    if cart_id is not None:
        return find_decision(config, cart_id, now, upgrade=True), "cart"  # as without a CART_ID
    from cartrescue.job import newsletters_of
    from cartrescue.pipeline import Planner
    from cartrescue.sources import open_source
    from cartrescue.sources.base import ignore_problem

    fallback = None
    with ExitStack() as stack:
        source = stack.enter_context(open_source(config))
        # Read only: a test that fails later (its channel, its render) leaves no ledger file made.
        ledger = config.open_ledger(create=False, upgrade=True)
        stack.callback(ledger.close)
        newsletters = newsletters_of(config, source, now, ignore_problem, stack)
        decisions = stack.enter_context(closing(Planner(config, now, ledger, newsletters=newsletters).decide(source)))
        for decision in decisions:
            if decision.action is Action.SEND:
                return decision, "due"
            if fallback is None and decision.cart.items:
                fallback = decision
    if fallback is not None:
        return fallback, "source"
    return _sample(config, now), "sample"


def _sample(config: Config, now: datetime) -> Decision:
    from cartrescue.pipeline import Planner
    from cartrescue.template_check import edge_carts

    # Named as what it is (its X-Cartrescue-Cart header, its --outbox file): the fixture's own
    # name, check:edge-one-item, read as a cart of templates check's.
    cart = replace(edge_carts()[0][0], id=SAMPLE_ID, source=_Given.name, created_at=now, updated_at=now)
    return next(iter(Planner(config, now).decide(_Given([cart]))), None) or Decision(
        cart=cart, action=Action.SKIP, reason=Reason.IDLE_BELOW_CUTOFF, tier=config.priority.tiers[-1].name)


def mark(message: OutgoingMessage, domain: str) -> OutgoingMessage:
    """The message as a test: ``[test]`` before the subject, a Message-ID of its own (a real
    reminder of the same step later must not look like a duplicate of it), a test header."""
    return replace(message, subject=SUBJECT_MARK + message.subject,
                   message_id=f"<cr.test.{secrets.token_hex(10)}@{domain}>",
                   date=datetime.now(timezone.utc).replace(microsecond=0),  # sent now, whatever the clock shown
                   headers=(*message.headers, ("X-Cartrescue-Test", "yes")))


def customer_hashes(cart: Cart, region: str | None) -> dict[str, str | None]:
    """The hashes of the customer's address and number a test rendered from ``cart`` records:
    ``forget`` finds the test (and its --outbox file, their name and cart in it) by either, even
    where no run has messaged the cart yet. Hashes, not the contacts: the owner's tests are no
    second list of customers."""
    from cartrescue.contacts import email_hash, normalize_email, normalize_phone, phone_hash

    email = normalize_email(cart.customer.email) if cart.customer.email else ""
    phone = normalize_phone(cart.customer.phone, region) if cart.customer.phone else None
    return {"customer_email_hash": email_hash(email) if email else None,
            "customer_phone_hash": phone_hash(phone) if phone else None}


def _channel(config: Config, outbox: Path | None) -> Channel:
    """The test's channel, built before the ledger is opened or a cart read: a relay setting it
    cannot send with (``smtp.ca_file`` that does not load, a bad ``envelope_from``, a password's
    variable unset) is refused (exit 2) without making or upgrading the ledger. Building one
    connects nowhere; ``deliver`` opens it."""
    from cartrescue.channels.outbox import OutboxChannel
    from cartrescue.channels.smtp import SmtpChannel
    from cartrescue.job import email_channel

    if outbox is not None:  # an .eml file needs no relay, nor its password (run --outbox asks for none)
        return OutboxChannel(config.outbox_folder(outbox), label="test")
    config.require_env("smtp")
    channel = email_channel(config, "send")
    if isinstance(channel, SmtpChannel):  # a run's advice (--resend-unconfirmed) is no option here
        channel.unconfirmed_advice = "it may have arrived (look in that mailbox before sending another test)"
    return channel


def send_test(config: Config, address: str, now: datetime, *, cart_id: str | None = None, sample: bool = False,
              step: int | None = None, locale: str | None = None, variant: str | None = None,
              outbox: Path | None = None) -> SendTestResult:
    """Compose, mark, deliver and record one test message to ``address``."""
    from cartrescue.channels.base import Envelope
    from cartrescue.compose.mime import build_message
    from cartrescue.contacts import is_valid_email, normalize_email
    from cartrescue.job import delivery_secret
    from cartrescue.preview import compose, locale_fallback

    to = normalize_email(address)
    if not to or not is_valid_email(to):
        raise ConfigError(f"send-test: not an e-mail address: {address!r}")
    delivery_secret(config)  # the link in a test must work like the customers' will
    channel = _channel(config, outbox)
    decision, origin = choose(config, now, cart_id, sample=sample)
    shown = compose(config, decision, now, step=step, locale=locale, variant=variant, to=to)
    assert shown.message is not None  # addressed to ``to``: always the e-mail
    message = mark(shown.message, config.shop.domain)
    try:
        data = build_message(message)
    except ValueError as exc:
        raise ConfigError(f"send-test: the message cannot be built: {exc}") from None
    # A test is an e-mail whatever its step's channel (text, webhook): an outbox names it ``.eml``.
    target = replace(shown.target or decision, channel="email")
    ledger = config.open_ledger()
    try:
        test_id = ledger.start_send_test({
            "email": to, "cart_key": "" if origin == "sample" else decision.cart.key,
            "cart_id": "" if origin == "sample" else decision.cart.id, "step": shown.step, "variant": shown.variant,
            **({} if origin == "sample" else customer_hashes(decision.cart, config.phone_region)),
            "locale": shown.locale or config.shop.default_locale, "template": target.template or "",
            "transport": channel.transport, "message_id": message.message_id}, now)
        with channel:
            outcomes = list(channel.deliver([Envelope(test_id, target, message, data)]))
        outcome = outcomes[0]
        ledger.finish_send_test(test_id, outcome.status.value, outcome.reply)
    finally:
        ledger.close()
    return SendTestResult(test_id, to, "" if origin == "sample" else decision.cart.id, origin, shown.step,
                          shown.variant, message.subject, channel.transport, outcome.status.value, outcome.reply,
                          message.message_id, None if origin == "sample" else shown.note,
                          shown.locale or config.shop.default_locale,
                          locale_fallback(locale, shown.locale, shown.step), shown.variant_fallback)
