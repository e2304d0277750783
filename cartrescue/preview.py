"""Preview: one cart's message, rendered exactly as a run would, without sending anything.

Owns finding one cart in a source, planning it with the real planner (so the preview shows what
a run would decide), and composing the requested step, locale and variant. It claims, sends and
allocates nothing: a per-recipient incentive code shows as a placeholder.

It tells the truth about the cart: a cart a run would never message (suppressed, ordered, its
sequence done, held out) shows no message but why (:func:`describe`), unless a step is asked
for, which is then shown under a note that a run would not send it (:func:`unsent_note`); by
default it shows the step that comes next for the cart, never one the ledger has done already.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime

from cartrescue.compose.render import PARTS, SMS_PART, Renderer, did_you_mean
from cartrescue.config import Config
from cartrescue.contacts import normalize_phone
from cartrescue.decide.sequence import DONE, of_sequence, step_number
from cartrescue.errors import ConfigError, SourceError
from cartrescue.job import newsletters_of
from cartrescue.ledger import NUMBER_CHANNELS, SentStep
from cartrescue.model import Action, Address, Cart, Decision, MarketingSend, Order, OutgoingMessage, RowProblem
from cartrescue.pipeline import DRY_RUN_SECRET, Composer, Planner, SmsText
from cartrescue.sources import open_source
from cartrescue.sources.base import Activity, CartSource, Window, ignore_problem
from cartrescue.sources.values import normalize_locale
from cartrescue.text import counted

#: The number an SMS step is previewed to when the cart has none a run could text (a reserved,
#: never-assigned North American number: 555-0100 to 555-0199 are for fiction).
PLACEHOLDER_PHONE = "+12025550100"

class _OneCart(CartSource):
    """A view of a source that yields only one cart (but every address's activity)."""

    def __init__(self, source: CartSource, cart_id: str) -> None:
        super().__init__(source.on_problem)
        self.source = source
        self.cart_id = cart_id
        self.name = source.name

    def carts(self, window: Window) -> Iterator[Cart]:
        found = self.source.cart(self.cart_id)
        return iter(() if found is None else (found,))

    def activity(self, window: Window) -> Iterator[Activity]:
        return self.source.activity(window)

    def unreadable(self, cart_keys: Sequence[str]) -> Collection[str]:
        return self.source.unreadable(cart_keys)

    def orders_for(self, carts: Sequence[Cart]) -> Iterator[Order]:
        return self.source.orders_for(carts)

    def sends_for(self, emails: Sequence[str], window: Window) -> Iterator[MarketingSend]:
        return self.source.sends_for(emails, window)


@dataclass(frozen=True, slots=True)
class Preview:
    decision: Decision  # what a run at ``now`` would do with the cart
    step: int
    variant: str | None
    message: OutgoingMessage | None  # the e-mail; None for a step that goes out as a text message or a call
    target: Decision | None = None  # the decision the message was composed from (step, variant, address)
    sms: SmsText | None = None  # the text message of an SMS step, as a run would send it
    channel: str = "email"  # the channel the step goes out by to this cart (its fallback included)
    locale: str | None = None  # the locale whose templates rendered it (``--locale`` may fall back)
    note: str | None = None  # why a run would not send the message shown (None: it sends it, now or later)
    why: str = ""  # the decision's reason in words (:func:`describe`); "" when it is due
    withheld: bool = False  # a run never messages the cart and no step was asked for: nothing composed
    warnings: tuple[str, ...] = ()  # what is wrong with the whole export (a misnamed column), as a run says it
    row: tuple[tuple[str, str], ...] | None = None  # a call-list step's row, (column, cell), as a run appends it
    list_path: str | None = None  # the call list that row goes to (call_list.path)
    variant_fallback: str | None = None  # the note that the variant has no files in the locale shown

    @property
    def shown(self) -> bool:
        """Whether a message (an e-mail or a text) was composed."""
        return not self.withheld


def find_decision(config: Config, cart_id: str, now: datetime, *, upgrade: bool = False,
                  warnings: list[RowProblem] | None = None) -> Decision:
    """The decision a run would make for ``cart_id`` now. ``upgrade``: bring an older ledger up
    to date to read it (``send-test``, which writes to it anyway); ``preview`` only reads.
    ``warnings``: gets the problems of the whole export (a misnamed column: every cart a
    ``no_contact``), which a preview of one cart showed nothing of."""
    with ExitStack() as stack:
        source = stack.enter_context(open_source(config))
        heard: list[RowProblem] = []  # why the cart could not be read, if it is there
        about = f"cart {cart_id}: "  # a CSV export's; a database source names the cart (RowProblem.cart_id)

        def hear(problem: RowProblem) -> None:
            if problem.cart_id == cart_id or problem.reason.startswith(about):
                heard.append(problem)
            elif problem.whole_file and warnings is not None and problem not in warnings:
                warnings.append(problem)

        source.on_problem = hear
        ledger = config.open_ledger(create=False, upgrade=upgrade)
        stack.callback(ledger.close)
        newsletters = newsletters_of(config, source, now, ignore_problem, stack)
        decision = next(iter(Planner(config, now, ledger, newsletters=newsletters).decide(_OneCart(source, cart_id))), None)
        why = source.not_abandoned(cart_id) if decision is None and not heard else None
    if decision is None:
        if heard:
            raise SourceError(f"cart {cart_id!r} cannot be read: {heard[0]}")
        if why is not None:
            raise ConfigError(f"cart {cart_id!r}: in the shop, not an abandoned cart: {why}")
        raise ConfigError(f"cart {cart_id!r}: not found in the source")
    return decision


#: What a run does with a cart that gets no message, ever: a preview shows none unless asked.
NEVER_SENT = frozenset({Action.SKIP, Action.HOLDOUT})


def preview(config: Config, cart_id: str, now: datetime, *, step: int | None = None, locale: str | None = None,
            variant: str | None = None) -> Preview:
    """Compose ``cart_id``'s message for ``step`` (default: the one due or waited for, else the
    one that comes next); a cart a run never messages is withheld unless ``step`` asks for one."""
    heard: list[RowProblem] = []
    decision = find_decision(config, cart_id, now, warnings=heard)
    warnings = tuple(str(problem) for problem in heard)
    if step is None and decision.action in NEVER_SENT:
        return Preview(decision, decision.step or 0, None, None, channel=decision.channel or "email",
                       why=describe(config, decision), withheld=True, warnings=warnings)
    composed = compose(config, decision, now, step=step, locale=locale, variant=variant)
    return replace(composed, warnings=warnings + composed.warnings)


def describe(config: Config, decision: Decision) -> str:
    """The decision's reason in words, "" when it is due: ``ordered: order 1042``; a suppression
    with its kind and day (``suppressed: unsubscribed 2026-11-02 via webhook (token)``), read from
    the ledger for this one cart: the planner, which reads suppressions in bulk, carries only which
    contact and the reason (``the address is suppressed (unsubscribed)``)."""
    from cartrescue.model import Reason
    from cartrescue.output import with_not_before

    if decision.reason is Reason.DUE:
        return ""
    detail = decision.detail
    if decision.reason is Reason.SUPPRESSED:
        detail = _suppression(config, decision) or detail
    detail = with_not_before(detail, decision.not_before)
    return f"{decision.reason.value}: {detail}" if detail else decision.reason.value


def _suppression(config: Config, decision: Decision) -> str:
    """``unsubscribed 2026-11-02 via webhook (token)``: the suppression of the cart's address or number."""
    from cartrescue.suppressions import check

    customer = decision.cart.customer
    ledger = config.open_ledger(create=False)
    try:
        for contact in (customer.email, decision.phone or customer.phone):
            try:
                found = check(ledger, contact, config.phone_region) if contact else None
            except ValueError:  # not an address or number a suppression could be of
                found = None
            if found is not None:
                day = found["created_at"].astimezone(config.shop.tz).date().isoformat()
                return f"{found['reason']} {day}" + (f" via {found['source']}" if found.get("source") else "")
    finally:
        ledger.close()
    return ""


def unsent_note(decision: Decision, number: int, sent: list[SentStep], why: str) -> str | None:
    """Why a run would not send step ``number`` of the cart (``None``: it sends it, now or
    later): it never messages the cart (``why``: :func:`describe`), or the ledger has done that
    step already."""
    if decision.action in NEVER_SENT:
        return f"a run would {decision.action.value} this cart and send it nothing ({why})"
    done = next((entry for entry in sent if entry.step == number and entry.status in DONE), None)
    if done is not None:
        return f"step {number} is done already ({done.status} {done.at:%Y-%m-%d %H:%M} UTC): a run does not send it again"
    return None


def _assigned(planner: Planner, decision: Decision, sequence: str, number: int, sent: list[SentStep]) -> str | None:
    """The variant a run gives this address at this step: the arm its earlier steps (``sent``)
    went out in, else a promoted winner (in the ledger), else the weights, as ``planner`` (one
    holding the ledger) assigns it."""
    from cartrescue.decide.experiments import subject

    if decision.step == number and decision.variant is not None:  # the run's own decision
        return decision.variant
    return planner.experiments.variant(subject(decision.cart), sequence, number, sent)


def compose(config: Config, decision: Decision, now: datetime, *, step: int | None = None, locale: str | None = None,
            variant: str | None = None, to: str | None = None) -> Preview:
    """Compose ``decision``'s cart's message for ``step`` (default: the one due or waited for,
    else the one that comes next after the ledger's, else the last), in ``locale`` and ``variant`` when given, addressed to ``to`` when given
    (``send-test``: the unsubscribe link then carries that address too, never the customer's).
    Its links are test links either way: its unsubscribe link unsubscribes nobody and its
    survey answers are recorded nowhere (a developer's click, a forwarded test mail)."""
    tier = next(t for t in config.priority.tiers if t.name == decision.tier)
    sequence = config.sequences[tier.sequence]
    if step is not None and step > len(sequence.steps):
        raise ConfigError(f"--step {step}: the sequence has {counted(len(sequence.steps), 'step')}")
    ledger = config.open_ledger(create=False)  # the run's promotions, history and suppressions
    try:
        # A decision made before the sequence is looked at (idle below the cutoff, an unreadable
        # order) names no step: the next one is the ledger's, not step 1 again.
        sent = of_sequence(ledger.history([decision.cart.key], [], []).by_cart.get(decision.cart.key, []),
                           tier.sequence)
        number = step or decision.step or min(step_number(sent), len(sequence.steps))
        arms = sequence.steps[number - 1].variants
        if variant is not None and variant not in arms:
            known = ", ".join(sorted(arms)) or "none"
            raise ConfigError(f"--variant {variant}: step {number} of sequence {tier.sequence} has no such variant"
                              f"{did_you_mean(variant, arms)} (variants: {known})")
        planner = Planner(config, now, ledger)
        if variant is None:
            variant = _assigned(planner, decision, tier.sequence, number, sent)
        channel = planner.step_channel(decision, number)
    finally:
        ledger.close()
    why = describe(config, decision)
    note = unsent_note(decision, number, sent, why)
    cart = decision.cart
    customer = cart.customer
    # Read as a customer's locale is: sr-latn is the folder sr_Latn's. An empty one (a script's
    # --locale "$LOCALE" with the variable unset) is refused, not shown in the customer's locale.
    if locale is not None:
        customer = replace(customer, locale=_locale_option(locale))
    if to is not None:
        customer = replace(customer, email=to)
    elif not customer.email:
        customer = replace(customer, email="customer@example.com")
    renderer = Renderer(config)
    composer = Composer(config, renderer, now, config.shop.unsubscribe_secret or DRY_RUN_SECRET)
    template = sequence.steps[number - 1].template
    if channel == "sms" and to is None:
        # The text a run would send; a cart without a usable number shows it to a placeholder.
        phone = decision.phone or normalize_phone(customer.phone, config.phone_region, mobile=True) \
            or PLACEHOLDER_PHONE
        target = replace(decision, cart=replace(cart, customer=customer), step=number, channel="sms",
                         template=template, variant=variant, phone=phone)
        sms = composer.compose_sms(target, test=True)
        return Preview(decision, number, variant, None, target, sms, "sms", sms.locale, note, why,
                       variant_fallback=variant_fallback(renderer, number, template, sms.locale, variant, (SMS_PART,)))
    if channel == "call-list" and to is None:  # no message: the row staff phone from, as a run appends it
        target = replace(decision, step=number, channel=channel, template=template, variant=variant,
                         phone=decision.phone or normalize_phone(cart.customer.phone, config.phone_region))
        row, path, problem = call_row(config, target, composer.call_offer(target), now)
        return Preview(decision, number, variant, None, target, channel=channel, note=note, why=why,
                       warnings=(problem,) if problem else (), row=row, list_path=path)
    if to is not None and channel in NUMBER_CHANNELS:
        # send-test's e-mail of a text (or call) step: no run renders that step as an e-mail for
        # its own channel; the e-mail in its place is rendered as one (links tagged for e-mail).
        channel = "email"
    target = replace(decision, cart=replace(cart, customer=customer), step=number, channel=channel,
                     template=template, variant=variant)
    message = composer.compose(target, test=True)  # test links: a click on one touches no customer
    if to is not None:  # the test recipient alone: a tester's mailbox must not list customers' names
        message = replace(message, to=Address(to))
    shown_in = renderer.resolve_locale(customer.locale, template)
    return Preview(decision, number, variant, message, target, channel=channel, locale=shown_in, note=note, why=why,
                   warnings=_empty_text(message, renderer),
                   variant_fallback=variant_fallback(renderer, number, template, shown_in, variant, PARTS))


def variant_fallback(renderer: Renderer, step: int, template: str, locale: str | None, variant: str | None,
                     parts: Sequence[str]) -> str | None:
    """The note that ``variant`` has none of ``parts`` of its own in ``locale`` while another
    locale has: its customers there read the base template, counted as the variant, as
    ``templates check`` notes it; `preview` and `send-test` say it, so that whoever checks each
    arm per market knows the one shown is the control's. ``None`` for a variant with files in no
    locale (the control, or a template that branches on ``variant``)."""
    if variant is None or locale is None:
        return None
    own = renderer.variant_locales(template, variant, parts)
    if not own or locale in own:
        return None
    files, them = (f"{template}@{variant}.{parts[0]}", "it") if len(parts) == 1 else (f"{template}@{variant}.*", "them")
    where = f"{', '.join(sorted(own))} {'has' if len(own) == 1 else 'have'} {them}"
    what = "text" if tuple(parts) == (SMS_PART,) else "template"
    return (f"variant {variant}: step {step}'s template has no {locale} files of the variant ({files}; {where}): "
            f"shown as the base {what}, which a customer of {locale} gets, counted as {variant}")


def call_row(config: Config, decision: Decision, offer: str,
             now: datetime) -> tuple[tuple[tuple[str, str], ...], str, str | None]:
    """The row a run would append to the call list for ``decision`` (under the list's own header
    where it has one, as a run writes it), the list's path, and why the list takes no row (a run
    fails the call then: :func:`~cartrescue.channels.call_list.list_problem`), or None."""
    from cartrescue.channels.call_list import Layout, UnusableList, layout_like, list_problem, row

    path = config.path(config.call_list.path)
    problem = list_problem(path)
    try:
        layout = layout_like(path)
    except (OSError, UnusableList):  # the problem says why: the row as a new list gets it
        layout = Layout()
    cells = row(decision, layout, config.shop.tz, now, region=config.phone_region, offer=offer,
                shop_url=config.shop.url)
    return tuple(cells), str(path), problem


def _empty_text(message: OutgoingMessage, renderer: Renderer) -> tuple[str, ...]:
    """A warning when the text part renders empty: the HTML looks right in the preview, and a
    run sends the e-mail with an empty plain-text part (``templates check`` fails it)."""
    if message.text.strip():
        return ()
    files = next((files for files in renderer.used_files() if len(files) == 3), ("", "the text part"))
    return (f"{files[1]}: the text part renders empty: a run sends this e-mail with an empty plain-text part "
            "(templates check: missing-text)",)


def _locale_option(value: str) -> str:
    normalized = normalize_locale(value)
    if normalized is None:
        raise ConfigError(f"--locale {value}: not a locale (write it like en, sv_SE or sr_Latn)")
    return normalized


def fell_back(asked: str | None, shown: str | None) -> bool:
    """Whether ``--locale asked`` was rendered in another locale than it or one it narrows
    (``sv_FI`` shown in ``sv``, ``sr_Latn_RS`` in ``sr_Latn`` are not; shown in ``en``, the shop's
    default, it is)."""
    normalized = normalize_locale(asked) if asked else None
    if normalized is None or shown is None:
        return False
    parts = normalized.split("_")
    return shown not in {"_".join(parts[:end]) for end in range(1, len(parts) + 1)}


def locale_fallback(asked: str | None, shown: str | None, step: int | None) -> str | None:
    """The note that ``--locale asked`` was shown in ``shown`` instead (the step's template has no
    files for it), or ``None``: `preview` and `send-test` say it, so that whoever checks a
    market's message knows it is the fallback a customer of that market gets."""
    if not fell_back(asked, shown):
        return None
    return (f"--locale {asked}: step {step}'s template has no {asked} files: shown in {shown} "
            f"(the fallback a customer of {asked} gets)")
