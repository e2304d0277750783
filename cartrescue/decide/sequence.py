"""Sequence planning: which step of a cart's sequence is due, and may it go out right now?

Owns step timing (delays from the cart's last activity, so activity after a step re-times the
later ones), "at most one step per cart per run, never out of order", one message per address
per local day, not on a day the shop's newsletter reached the address, and quiet hours in the
shop's timezone (a text's own window in its number's zones). It must not claim or deliver, nor read the newsletter sends (callers hand them in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cartrescue.config import Config, EligibilityConfig, QuietHours, Sequence
from cartrescue.contacts import phone_zones
from cartrescue.decide.eligibility import Verdict, new_verdict
from cartrescue.ledger import SentStep
from cartrescue.ledger.values import STEP_DONE
from cartrescue.model import (
    ACTION_DEFER,
    ACTION_SKIP,
    REASON_MESSAGED_TODAY,
    REASON_NEWSLETTER_TODAY,
    REASON_OUTSIDE_BACKFILL,
    REASON_QUIET_HOURS,
    REASON_SEQUENCE_DONE,
    REASON_STEP_NOT_DUE,
    Cart,
    MarketingSend,
    quick_init,
    quick_new,
)
from cartrescue.text import counted


#: Statuses that make a step "done" (the ledger owns the list: :data:`cartrescue.ledger.values.STEP_DONE`).
DONE = STEP_DONE


@quick_init
@dataclass(frozen=True, slots=True)
class Due:
    step: int  # 1-based
    due_at: datetime


_due = quick_new(Due)  # Due(...) for fewer instructions (:func:`~cartrescue.model.quick_new`)
_TWO_DIGITS = [f"{n:02d}" for n in range(60)]


def minute_text(moment: datetime) -> str:
    """``f"{moment:%Y-%m-%d %H:%M}"``, as the verdicts' details write a time. ``strftime`` costs
    ~20,000 instructions (it goes through the ``time`` module); a run writes one for every cart
    whose sequence started too long ago. A year before 1000 goes through ``strftime`` (which
    does not pad it on every platform alike)."""
    year = moment.year
    if year < 1000:
        return f"{moment:%Y-%m-%d %H:%M}"
    return f"{year}-{_TWO_DIGITS[moment.month]}-{_TWO_DIGITS[moment.day]} {_TWO_DIGITS[moment.hour]}:" \
           f"{_TWO_DIGITS[moment.minute]}"


def of_sequence(sent: list[SentStep], name: str, channels: tuple[str, ...] = ()) -> list[SentStep]:
    """The steps of ``sent`` that belong to sequence ``name`` (an older row names none: it is
    taken for this one's). A cart whose score moved it to a tier with another sequence starts
    that sequence: counted across sequences, a cart mailed step 1 of ``default`` found ``vip``'s
    one-step call sequence done, and got neither the call nor ``default``'s later steps.

    A step is still claimed once per cart, step and channel: where the next step of ``name``
    (on its channel of ``channels``) was done by the other sequence, it counts as done here
    too, or the cart would wait for a claim it can never win."""
    own = [entry for entry in sent if entry.sequence is None or entry.sequence == name]
    if len(own) == len(sent):
        return sent
    taken = {(entry.step, entry.channel): entry for entry in sent if entry.status in DONE}
    while (number := step_number(own)) <= len(channels):
        entry = taken.get((number, channels[number - 1]))
        if entry is None or entry in own:
            break
        own.append(entry)
    return own


def done_elsewhere(sent: list[SentStep], own: list[SentStep], step: int, channel: str) -> SentStep | None:
    """The other sequence's done claim of ``step`` on ``channel`` that ``own`` (:func:`of_sequence`
    of ``sent``) does not count, else None. A step that goes by another channel than its own (a
    call or text to a cart without a number goes by e-mail) is claimed on that one: where the
    other sequence's step went out there, this step can never be claimed, and counts as done."""
    for entry in sent:
        if entry.step == step and entry.channel == channel and entry.status in DONE and entry not in own:
            return entry
    return None


def step_number(sent: list[SentStep]) -> int:
    """The number of the step that comes next (one past the last done; may be past the end)."""
    if not sent:  # most carts of a run: answered without building a generator
        return 1
    return max((entry.step for entry in sent if entry.status in DONE), default=0) + 1


def next_step(cart: Cart, sequence: Sequence, sent: list[SentStep], now: datetime,
              backfill: timedelta | None = None, delays: tuple[timedelta, ...] | None = None) -> Due | Verdict:
    """The step to send now, or why none is (sequence done, next step not yet due, too late to
    start): a verdict about a step names it (``step``), as the decision does that is made of it.

    Step n is due ``delay_n`` after the cart's last activity, and never sooner than the gap
    ``delay_n - delay_(n-1)`` after step n-1 went out: a run after cron was down (or a shop's
    first run) starts the sequence late but keeps its spacing, instead of sending the steps on
    consecutive days. A sequence is not started at all when step 1 came due more than
    ``backfill`` ago.

    ``delays``: the steps' delays, as the planner reads them once per run (each read of a
    step's field costs a pydantic attribute read, per cart); ``None`` reads them from ``sequence``.
    """
    number = step_number(sent)
    if delays is None:
        delays = tuple(step.delay for step in sequence.steps)
    if number > len(delays):
        return new_verdict(ACTION_SKIP, REASON_SEQUENCE_DONE, detail=f"{counted(len(delays), 'step')} sent")
    due_at = cart.updated_at + delays[number - 1]
    if number == 1:
        if backfill is not None and now - due_at > backfill:
            return new_verdict(ACTION_SKIP, REASON_OUTSIDE_BACKFILL, step=1,
                               detail=f"step 1 came due {minute_text(due_at)} UTC, more than eligibility.backfill ago")
    else:
        previous = max((entry.at for entry in sent if entry.status in DONE and entry.step == number - 1),
                       default=None)
        if previous is not None:
            due_at = max(due_at, previous + (delays[number - 1] - delays[number - 2]))
    if now < due_at:
        return new_verdict(ACTION_DEFER, REASON_STEP_NOT_DUE, not_before=due_at, detail=f"step {number}", step=number)
    return _due(number, due_at)


_DAY = timedelta(days=1)


@lru_cache(maxsize=1024)
def _span(zones: tuple[ZoneInfo, ...], at: datetime) -> str:
    """``at`` on the clocks of the westernmost and easternmost of ``zones`` (``09:00 in
    Europe/Bucharest to 19:00 in Asia/Anadyr``): the two a multi-zone number's window ends in.
    Cached: a run's carts share the few plans and moments (16 clocks for a Russian mobile)."""
    clocks = [at.astimezone(zone) for zone in zones]
    west = min(clocks, key=_offset)
    east = max(clocks, key=_offset)
    return f"{west:%H:%M} in {west.tzinfo} to {east:%H:%M} in {east.tzinfo}"


def _offset(local: datetime) -> timedelta:
    return local.utcoffset() or timedelta(0)


class Calendar:
    """The shop's local clock: "today" and quiet hours (``eligibility.quiet_hours`` for every
    channel, plus a channel's own window: ``channel_quiet={"sms": sms.quiet_hours}``).

    A channel in ``recipient_zoned`` keeps its own window in the recipient's local time, in every
    timezone the number's plan places it in (:func:`~cartrescue.contacts.phone_zones`), else in
    the shop's: a Swedish shop's 09:00 is 03:00 in New York, and rules on texts (the US TCPA's
    8:00-21:00) count the recipient's clock. A number whose plan spans several zones (a Russian
    mobile: Bucharest to Anadyr) may be anywhere in them, so it is texted only when it is day in
    all of them. The methods that take ``phone`` apply it."""

    def __init__(self, config: EligibilityConfig, tz: ZoneInfo,
                 channel_quiet: dict[str, QuietHours | None] | None = None,
                 recipient_zoned: frozenset[str] = frozenset()) -> None:
        self.tz = tz
        self.one_per_day = config.one_message_per_day
        self.quiet = config.quiet_hours
        # The call list has no quiet hours: staff call in their own working hours.
        self.windows: dict[str, list[QuietHours]] = {"call-list": []}
        self._own: dict[str, QuietHours] = {}
        for channel, own in (channel_quiet or {}).items():
            self.windows[channel] = [w for w in (self.quiet, own) if w is not None]
            if own is not None and channel in recipient_zoned:
                self._own[channel] = own
        self._zones: dict[str, tuple[ZoneInfo, ...]] = {}  # number -> its zones (none: the shop's)
        self._zone_sets: dict[tuple[str, ...], tuple[ZoneInfo, ...]] = {}  # a plan's zone names -> its zones
        self._no_daytime: dict[tuple[str, tuple[ZoneInfo, ...], datetime], str] = {}
        self._multi_until: dict[tuple[str, tuple[ZoneInfo, ...], datetime], datetime | None] = {}

    @classmethod
    def of_shop(cls, config: Config) -> "Calendar":
        """The calendar a run plans and claims by: texts keep their own quiet hours."""
        zoned = frozenset({"sms"}) if config.sms.quiet_hours_zone == "recipient" else frozenset()
        return cls(config.eligibility, config.shop.tz, {"sms": config.sms.quiet_hours}, zoned)

    def zoned(self, channel: str) -> bool:
        """Whether ``channel`` keeps quiet hours on its recipients' clocks."""
        return channel in self._own

    def recipient_zones(self, channel: str, phone: str | None) -> tuple[ZoneInfo, ...]:
        """The zones ``channel``'s own quiet hours are kept in for ``phone``: one for most numbers,
        several for a number whose plan spans them; none: the shop's (a number the plan places
        nowhere, or only in the shop's zone)."""
        if phone is None or channel not in self._own:
            return ()
        zones = self._zones.get(phone)
        if zones is None:
            zones = self._zones[phone] = self._loaded(phone_zones(phone))
        return zones

    def _loaded(self, names: tuple[str, ...]) -> tuple[ZoneInfo, ...]:
        """``names`` as zones (those this system's tz database knows), once per plan's set: the
        carts of one country share the same few."""
        zones = self._zone_sets.get(names)
        if zones is None:
            loaded = []
            for name in names:
                try:
                    loaded.append(ZoneInfo(name))
                except (ZoneInfoNotFoundError, ValueError):
                    continue
            zones = () if [zone.key for zone in loaded] == [self.tz.key] else tuple(loaded)
            self._zone_sets[names] = zones
        return zones

    def _zoned(self, channel: str, phone: str | None) -> list[tuple[QuietHours, ZoneInfo]]:
        """``channel``'s quiet windows, each with the zone its clock is read in (the channel's own
        window once per zone of the number)."""
        windows = self.windows.get(channel)
        if windows is None:
            return [] if self.quiet is None else [(self.quiet, self.tz)]
        zones = self.recipient_zones(channel, phone)
        if not zones:
            return [(window, self.tz) for window in windows]
        own = self._own[channel]  # recipient_zones gives zones only to a channel with its own window
        return [(window, zone) for window in windows for zone in (zones if window is own else (self.tz,))]

    def no_daytime(self, channel: str, phone: str | None, now: datetime) -> str:
        """Why ``channel`` never reaches ``phone`` by day ("" when it does): no moment of the 24
        hours from ``now`` is outside its own window in every zone of the number's plan (zones
        that span more hours than the window leaves open), or none is outside both that and the
        shop's ``eligibility.quiet_hours`` (a number's day that is the shop's night: Auckland's
        from Stockholm). Such a number is treated as one the channel cannot reach (the step goes
        by e-mail): any one zone's clock would text the others at night, and a text held for a
        moment that never comes held the cart's every step. Once per plan's zones and ``now``."""
        zones = self.recipient_zones(channel, phone)
        if not zones:
            return ""
        key = (channel, zones, now)
        if key not in self._no_daytime:
            if len(self._no_daytime) >= 4096:
                self._no_daytime.clear()
            self._no_daytime[key] = self._no_moment(channel, zones, now)
        return self._no_daytime[key]

    def _no_moment(self, channel: str, zones: tuple[ZoneInfo, ...], now: datetime) -> str:
        """:meth:`no_daytime`'s answer for the number's ``zones``, uncached."""
        own = self._own[channel]
        if len(zones) > 1 and self._never_open(now, [(own, zone) for zone in zones]):
            return (f"no moment of the next 24 hours is outside {channel}.quiet_hours in all {len(zones)} of the "
                    f"number's zones ({_span(zones, now)})")
        if self.quiet is not None and self._never_open(now, [(self.quiet, self.tz), *((own, zone) for zone in zones)]):
            return (f"no moment of the next 24 hours is outside both eligibility.quiet_hours on the shop's clock and "
                    f"{channel}.quiet_hours on the number's ({', '.join(zone.key for zone in zones)})")
        return ""

    def _never_open(self, now: datetime, windows: list[tuple[QuietHours, ZoneInfo]]) -> bool:
        """Whether no moment of the 24 hours from ``now`` is outside every one of ``windows``."""
        until = self._quiet_end(now, windows, _DAY)
        return until is not None and until - now > _DAY

    def counted_day(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The local day one message a day counts at ``now``, from its midnight to the next
        (what the ledger's claim checks a number against); ``None`` when the rule is off."""
        if not self.one_per_day:
            return None
        return self.local_day_start(now), self.next_local_midnight(now)

    def local_day_start(self, now: datetime) -> datetime:
        """The shop's midnight that began ``now``'s local day (in ``now``'s timezone)."""
        day = now.astimezone(self.tz).date()
        return datetime.combine(day, time(0, 0), self.tz).astimezone(now.tzinfo)

    def next_local_midnight(self, now: datetime) -> datetime:
        local = now.astimezone(self.tz)
        tomorrow = (local + timedelta(days=1)).date()
        return datetime.combine(tomorrow, time(0, 0), self.tz).astimezone(now.tzinfo)

    def same_local_day(self, first: datetime, second: datetime) -> bool:
        return first.astimezone(self.tz).date() == second.astimezone(self.tz).date()

    def quiet_until(self, now: datetime, channel: str = "email", phone: str | None = None) -> datetime | None:
        """When ``channel`` may send again (to ``phone``) if ``now`` is quiet time for it, else None.

        With two windows (the general one and the channel's) the later end wins, and a window
        the first one ends in is followed to its own end.
        """
        if self.quiet is None and channel not in self.windows:  # e-mail in a shop without quiet hours
            return None
        zones = self.recipient_zones(channel, phone)
        if len(zones) < 2:
            return self._quiet_end(now, self._zoned(channel, phone), 2 * _DAY)
        # A number in many zones reads a window per zone (a Russian mobile: 16): once per plan
        # and moment (a run plans at one), not per cart.
        key = (channel, zones, now)
        if key not in self._multi_until:
            if len(self._multi_until) >= 4096:
                self._multi_until.clear()
            self._multi_until[key] = self._quiet_end(now, self._zoned(channel, phone), 2 * _DAY)
        return self._multi_until[key]

    def _quiet_end(self, now: datetime, windows: list[tuple[QuietHours, ZoneInfo]],
                   horizon: timedelta) -> datetime | None:
        """The first moment from ``now`` outside every one of ``windows`` (None: ``now`` is), each
        window's end followed into the next; past ``horizon`` it stops where it got to (still
        quiet): windows in zones far apart may leave no moment open at all."""
        limit = now + horizon
        until = None
        while True:
            moved = False
            for window, tz in windows:
                at = until or now
                end = self._window_end(at, window, tz)
                if end is not None and end > at:
                    until, moved = end, True
            if not moved or (until is not None and until > limit):
                return until

    def _window_end(self, now: datetime, window: QuietHours, tz: ZoneInfo) -> datetime | None:
        """End of ``window`` on ``tz``'s clock when ``now`` falls in it (it may cross midnight), else None."""
        start, end = window.start, window.end
        local = now.astimezone(tz)
        clock = local.time().replace(tzinfo=None)
        if start == end:
            return None
        if start < end:
            inside = start <= clock < end
            end_day = local.date()
        else:  # e.g. 21:00-08:00
            inside = clock >= start or clock < end
            end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
        if not inside:
            return None
        return self._first_at(end_day, end, now, tz)

    def _first_at(self, day: date, clock: time, after: datetime, tz: ZoneInfo) -> datetime:
        """The first moment after ``after`` that ``tz``'s clock (the shop's, or a text's recipient's)
        shows ``clock`` on ``day`` (in ``after``'s timezone), where a quiet window ends. On a clock-change day that time comes
        twice (fall back: in the repeated hour the window runs again, so a run in its second pass
        waits for the second end, not for one already past) or never (spring forward: the window
        is over when the clock jumps past its end, not an hour later, as the gate then says)."""
        wall = datetime.combine(day, clock)
        first = wall.replace(tzinfo=tz)
        earlier, later = first.astimezone(timezone.utc), first.replace(fold=1).astimezone(timezone.utc)
        if later > earlier:  # repeated
            return (earlier if earlier > after else later).astimezone(after.tzinfo)
        if later < earlier:  # skipped: ``later`` is before the jump, ``earlier`` after it
            low, high = int(later.timestamp()), int(earlier.timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) < wall:
                    low = middle
                else:
                    high = middle
            earlier = datetime.fromtimestamp(high, timezone.utc)
        return earlier.astimezone(after.tzinfo)

    def tomorrow(self, now: datetime, channel: str = "email", phone: str | None = None) -> datetime:
        """The first moment of the shop's next day ``channel`` may send (after its quiet hours)."""
        not_before = self.next_local_midnight(now)
        return self.quiet_until(not_before, channel, phone) or not_before

    def gate(self, now: datetime, last_message: datetime | None, newsletter: MarketingSend | None = None,
             channel: str = "email", phone: str | None = None) -> Verdict | None:
        """Defer when the customer had a message today (on any channel), or the shop's newsletter
        (a send up to ``now``: one scheduled for later today is not known yet), or when it is
        quiet time for ``channel``.

        The call list keeps the first rule: a call is one of the customer's messages of the day;
        staff call in their own working hours, whatever the newsletter (and it has no quiet hours).
        """
        if self.one_per_day and last_message is not None and self.same_local_day(last_message, now):
            return new_verdict(ACTION_DEFER, REASON_MESSAGED_TODAY, not_before=self.tomorrow(now, channel, phone),
                               detail=f"last message {minute_text(last_message)} UTC")
        if newsletter is not None and channel != "call-list" and newsletter.sent_at <= now and \
                self.same_local_day(newsletter.sent_at, now):
            what = f"newsletter {newsletter.campaign!r}" if newsletter.campaign else "newsletter"
            return new_verdict(ACTION_DEFER, REASON_NEWSLETTER_TODAY, not_before=self.tomorrow(now, channel, phone),
                               detail=f"{what} sent {minute_text(newsletter.sent_at)} UTC")
        return self.quiet_verdict(now, channel, phone)

    def quiet_verdict(self, now: datetime, channel: str = "email", phone: str | None = None) -> Verdict | None:
        """Defer when ``now`` is quiet time for ``channel`` (to ``phone``), until the window's end:
        the planner's rule, which the executor applies again as a live run claims (a run that
        starts at 20:59 must not send at 21:01)."""
        quiet = self.quiet_until(now, channel, phone)
        if quiet is None:
            return None
        which = f"{channel} quiet hours" if channel in self.windows else "quiet hours"
        zones = self.recipient_zones(channel, phone)
        if len(zones) > 1:
            there = f" ({_span(zones, quiet)}, the number's {len(zones)} zones)"
        else:
            there = "".join(f" ({quiet.astimezone(zone):%H:%M} in {zone.key}, the number's time)" for zone in zones)
        return Verdict(ACTION_DEFER, REASON_QUIET_HOURS, not_before=quiet,
                       detail=f"{which} until {quiet.astimezone(self.tz):%Y-%m-%d %H:%M} shop time{there}")

    def next_quiet(self, after: datetime, channel: str = "email", phone: str | None = None) -> datetime | None:
        """The first moment after ``after`` that a quiet window of ``channel`` (to ``phone``)
        begins (None: the channel has none). A run that claims for hours compares each claim's
        time with it, and reads the windows again only once the clock has reached it."""
        starts = []
        for window, tz in self._zoned(channel, phone):
            if window.start == window.end:
                continue
            day = after.astimezone(tz).date()
            for offset in (0, 1):
                begins = self._first_at(day + timedelta(days=offset), window.start, after, tz)
                if begins > after:
                    starts.append(begins)
                    break
        return min(starts, default=None)
