"""The composer: a send decision rendered into its message (e-mail, text, webhook document).

Separate from the executor because ``preview``, ``doctor`` and ``send-test`` compose without
claiming or delivering anything: it reads no ledger and knows no channel.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone

from cartrescue.channels.call_list import recovery_link
from cartrescue.config import Config, Incentive, Step, feedback_field
from cartrescue.contacts import normalize_phone, whole_name
from cartrescue.errors import TemplateError
from cartrescue.compose.incentives import Allocation, code_expiry, expiry_day, placeholder
from cartrescue.compose.links import safe_url
from cartrescue.compose.mime import mailto_address
from cartrescue.model import Address, Decision, OutgoingMessage, quick_new
from cartrescue.compose.render import SMS_PART, Renderer
from cartrescue.sms_text import SmsLength, measure
from cartrescue.sms_text import problems as sms_problems
from cartrescue.survey import links as survey_links
from cartrescue.unsubscribe import TokenMaker


DRY_RUN_SECRET = "dry-run: not a secret"
_message = quick_new(OutgoingMessage)  # OutgoingMessage(...) for fewer instructions: one per message composed


class Composer:
    """Turns a send decision into an :class:`OutgoingMessage` (render + headers)."""

    def __init__(self, config: Config, renderer: Renderer, now: datetime, secret: str, *,
                 dated_now: bool = False) -> None:
        """``dated_now``: the Date header is the real time the message is built (a delivering
        run), not the run's clock: a pinned ``--now``, or the start of a run that sends for an
        hour, dated mail in the past (RFC 5322: when it was ready to go)."""
        self.config = config
        self.renderer = renderer
        self.now = now
        self.secret = secret
        self._unsubscribe_token = TokenMaker(secret)  # its HMAC keyed once per run
        self._dated_now = dated_now
        shop = config.shop
        self.sender = Address(shop.from_email, shop.from_name or shop.name)
        self._reply_to = _mailbox_text(shop.reply_to, shop.reply_to_name)
        self._domain = shop.domain
        # RFC 8058: one-click unsubscribing (List-Unsubscribe-Post) is for an https link only
        self._one_click = (("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),) if shop.one_click else ()
        self._tiers = {tier.name: tier for tier in config.priority.tiers}
        # The mailbox as the header carries it: ASCII, its domain in IDNA form (a structured
        # header has no encoded words: bücher.example turned the whole line into one).
        self._mailto = mailto_address(shop.unsubscribe_mailto) if shop.unsubscribe_mailto else None
        self._shop = config.shop_identity
        # Gmail's Feedback-ID (Postmaster Tools reports spam complaints per value of each field):
        # the sequence's step, the tier, the kind of mail and the shop's sender id.
        self._feedback = {tier.name: f"{feedback_field(tier.sequence)}-{{}}:{feedback_field(tier.name)}:"
                          f"cart-reminder:{shop.feedback_id}" for tier in config.priority.tiers} \
            if shop.feedback_id else None

    def message_id(self, decision: Decision) -> str:
        """Derived from (shop, cart, step, channel), which the ledger claims at most once: the
        message is built, with its id, before the claim, and a retry after a 4xx keeps the same
        id. The shop (its name and sender) keeps it globally unique (RFC 5322): two shops of one
        sending domain with the same cart ids made the same ids, and a mailbox that already
        holds an id may drop the second message."""
        key = f"{self._shop}|{decision.cart.key}|{decision.step}|{decision.channel}"
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
        return f"<cr.{digest}@{self._domain}>"

    def incentive(self, decision: Decision) -> Incentive | None:
        """The incentive of the decision's step for its tier (``None`` when there is none)."""
        if decision.step is None:
            return None
        tier = self._tiers[decision.tier]  # type: ignore[index]
        return self.config.sequences[tier.sequence].steps[decision.step - 1].incentive_for(decision.tier)

    def call_offer(self, decision: Decision, code: Allocation | None = None) -> str:
        """What staff may offer on the phone, for the call list's ``incentive`` column: the
        step's incentive, its code (the allocated one, else the shared one; a placeholder before
        the claim) and its last day on the shop's calendar, as a message shows them (``10% off
        with code CR-7K2M9Q, valid until 2026-11-23``); empty without one."""
        incentive = self.incentive(decision)
        if incentive is None:
            return ""
        shown, last_day = self._shown_code(incentive, code)
        shown = shown or incentive.code
        if last_day is None:
            last_day = expiry_day(code_expiry(self.now, incentive.valid_for, self.config.shop.tz), self.config.shop.tz)
        value = f"{incentive.value.normalize():f}"
        offer = {"percent": f"{value}% off", "fixed": f"{value} {decision.cart.currency} off"}.get(
            incentive.kind, "free shipping")
        with_code = f" with code {shown}" if shown else ""
        return f"{offer}{with_code}, valid until {last_day.isoformat()}"

    def _shown_code(self, incentive: Incentive | None, code: Allocation | None) -> tuple[str | None, date | None]:
        """The code and last day a message shows: its allocated code's, as the ledger recorded
        them; without one (a dry-run, a preview), a per-recipient incentive's placeholder and no
        day (the renderer counts it from this run's ``now``)."""
        if code is not None:
            return code.code, expiry_day(code.expires, self.config.shop.tz)
        if incentive is not None and incentive.codes is not None:
            return placeholder(incentive.codes), None
        return None, None

    def compose(self, decision: Decision, code: Allocation | None = None, *, test: bool = False) -> OutgoingMessage:
        """Render ``decision``'s message; ``code`` is its allocated incentive code. Without one
        (a dry-run or preview) a per-recipient incentive shows a placeholder: nothing is allocated.
        ``test``: a preview's or send-test's message, whose links are test links
        (:mod:`cartrescue.tokens`): its unsubscribe link unsubscribes nobody, its survey answers
        are not recorded for the cart."""
        cart = decision.cart
        email = cart.customer.email
        if not email or decision.step is None or decision.template is None:
            raise TemplateError(f"cart {cart.id}: nothing to compose (no address or step)")
        shop = self.config.shop
        tier = self._tiers[decision.tier]  # type: ignore[index]
        sequence = self.config.sequences[tier.sequence]
        step = sequence.steps[decision.step - 1]
        incentive = step.incentive_for(decision.tier)
        shown, expires_on = self._shown_code(incentive, code)
        locale = self.renderer.resolve_locale(cart.customer.locale, step.template)
        token = self._unsubscribe_token(email, test=test)
        unsubscribe_url = shop.unsubscribe_url.replace("{token}", token)
        try:
            context = self.renderer.context(
                cart, locale=locale, step=decision.step, step_count=len(sequence.steps), tier=decision.tier,
                previous_orders=decision.facts.previous_orders if decision.facts else 0,
                unsubscribe_url=unsubscribe_url, incentive=incentive, now=self.now, variant=decision.variant,
                code=shown, survey=survey_links(self.config, self.secret, cart.key, decision.step, locale, test=test),
                sequence=tier.sequence, channel=decision.channel or "email", expires_on=expires_on,
            )
        except (ArithmeticError, ValueError) as exc:  # an amount no currency format can show, ...
            raise TemplateError(f"cannot format this cart's values: {type(exc).__name__}: {exc}") from None
        rendered = self.renderer.render(step.template, locale, context, decision.variant)
        targets = [f"<{unsubscribe_url}>"]
        if self._mailto:
            targets.append(f"<mailto:{self._mailto}?subject=unsubscribe%20{token}>")
        name = whole_name(cart.customer.first_name, cart.customer.last_name,
                          cart.customer.locale or shop.default_locale)
        return _message(
            message_id=self.message_id(decision),
            sender=self.sender,
            to=Address(email, name),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            date=datetime.now(timezone.utc).replace(microsecond=0) if self._dated_now else self.now,
            reply_to=self._reply_to,
            headers=(
                ("List-Unsubscribe", ", ".join(targets)),
                *self._one_click,
                ("X-Cartrescue-Cart", cart.key),
                ("X-Cartrescue-Step", str(decision.step)),
                *((("X-Cartrescue-Variant", decision.variant),) if decision.variant else ()),
                *((("Feedback-ID", self._feedback[decision.tier].format(decision.step)),)  # type: ignore[index]
                  if self._feedback is not None else ()),
            ),
            language=locale,
        )


    def _sms_step(self, decision: Decision) -> tuple[Step, int]:
        tier = self._tiers[decision.tier]  # type: ignore[index]
        sequence = self.config.sequences[tier.sequence]
        return sequence.steps[decision.step - 1], len(sequence.steps)  # type: ignore[operator]

    def compose_sms(self, decision: Decision, code: Allocation | None = None, *, test: bool = False) -> SmsText:
        """Render ``decision``'s text message and check it: at most ``sms.max_segments``, the
        opt-out keyword and the shop's name in it; raise TemplateError for this cart otherwise
        (:meth:`cartrescue.compose.render.Renderer.render_sms` puts cart values on one line).
        ``test``: a preview's, whose unsubscribe link unsubscribes nobody."""
        cart = decision.cart
        if decision.step is None or decision.template is None or not decision.phone:
            raise TemplateError(f"cart {cart.id}: nothing to compose (no phone number or step)")
        step, count = self._sms_step(decision)
        incentive = step.incentive_for(decision.tier)
        shown, expires_on = self._shown_code(incentive, code)
        locale = self.renderer.resolve_locale(cart.customer.locale, step.template, SMS_PART)
        email = cart.customer.email
        unsubscribe_url = self.config.shop.unsubscribe_url.replace("{token}", self._unsubscribe_token(email, test=test)) \
            if email else ""
        try:
            context = self.renderer.context(
                cart, locale=locale, step=decision.step, step_count=count, tier=decision.tier,
                previous_orders=decision.facts.previous_orders if decision.facts else 0,
                unsubscribe_url=unsubscribe_url, incentive=incentive, now=self.now, variant=decision.variant, code=shown,
                sequence=self._tiers[decision.tier].sequence, channel="sms",  # type: ignore[index]
                tags=self.config.sms.link_tags, expires_on=expires_on,
            )
        except (ArithmeticError, ValueError) as exc:
            raise TemplateError(f"cannot format this cart's values: {type(exc).__name__}: {exc}") from None
        limit = self.config.sms.max_segments
        text = self.renderer.render_sms(step.template, locale, context, decision.variant, limit)
        found = sms_problems(text, self.config.shop.name, limit)
        if found:
            file = self.renderer.part_file(step.template, locale, SMS_PART, decision.variant)
            raise TemplateError(f"{file}: {found[0][1]}")
        length = measure(text)
        return SmsText(text, length, locale)

    def webhook_body(self, decision: Decision, message: OutgoingMessage, code: Allocation | None = None) -> bytes:
        """The JSON document the webhook channel POSTs (docs/channels.md#webhook), without its
        ``id`` (the ledger id, known once claimed: the channel puts it first). UTF-8; a value
        that cannot be encoded (a lone surrogate) fails this cart, before its claim."""
        cart = decision.cart
        customer = cart.customer
        step, count = self._sms_step(decision)
        incentive = step.incentive_for(decision.tier)
        tier = self._tiers[decision.tier]  # type: ignore[index]
        offer = None
        if incentive is not None:
            # The code's own expiry (the end of the shop's day the message names), as `codes export`
            # has it: an allocated code's as recorded, however many runs later it goes out (a retry
            # after it expired got a fresh code and its expiry: Codes.allocate).
            expires = code.expires if code is not None else code_expiry(self.now, incentive.valid_for,
                                                                         self.config.shop.tz)
            offer = {"kind": incentive.kind, "value": str(incentive.value),
                     "code": code.code if code is not None else incentive.code, "expires_at": _iso(expires)}
        locale = self.renderer.resolve_locale(customer.locale, step.template)
        unsubscribe = next((value for name, value in message.headers if name == "List-Unsubscribe"), "")
        document = {
            "event": "cart.reminder",
            "message_id": message.message_id,
            "shop": {"name": self.config.shop.name, "url": self.config.shop.url},
            "cart": {
                "id": cart.id, "key": cart.key, "currency": cart.currency, "total": str(cart.total),
                "recovery_url": recovery_link(cart.recovery_url, self.config.shop.url) or None,
                "updated_at": _iso(cart.updated_at),
                "items": [{"sku": item.sku, "name": item.name, "quantity": item.quantity,
                           "unit_price": str(item.unit_price), "image_url": safe_url(item.image_url),
                           "product_url": safe_url(item.product_url)} for item in cart.items],
            },
            "customer": {"id": customer.id, "email": customer.email, "phone": self._e164(decision),
                         "first_name": customer.first_name, "last_name": customer.last_name,
                         "locale": customer.locale, "is_guest": customer.is_guest},
            "step": decision.step, "step_count": count, "sequence": tier.sequence, "tier": decision.tier,
            "score": decision.score, "variant": decision.variant, "locale": locale,
            "subject": message.subject, "text": message.text, "html": message.html,
            "unsubscribe_url": unsubscribe.split(">", 1)[0].lstrip("<"),
            "incentive": offer,
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")

    def _e164(self, decision: Decision) -> str | None:
        """The customer's number as the webhook document gives it: E.164, read in the shop's
        country as every channel reads it (a messenger's API takes no ``070-123 45 67``), or as
        the cart has it where it is no valid number (the receiver may still read it)."""
        raw = decision.cart.customer.phone
        return decision.phone or normalize_phone(raw, self.config.phone_region) or raw


def _mailbox_text(address: str | None, name: str | None) -> str | None:
    """``address``, or ``"name" <address>`` as ``OutgoingMessage.reply_to`` takes a display name."""
    if not address or not name or not name.strip():
        return address
    quoted = name.strip().replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SmsText:
    """A rendered and checked text message."""

    text: str
    length: SmsLength
    locale: str
