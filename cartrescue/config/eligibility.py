"""The ``eligibility`` section: which carts may be reminded, and when (quiet hours, consent).

Apart because the SMS channel's section reads its quiet hours and consent policy too.
"""

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cartrescue.config.types import (
    ClockTime,
    Duration,
    above_zero_for,
    Model,
    duration_text,
)

#: Whose cart may be reminded: ``required`` only a "yes"; ``soft-opt-in`` also an unknown answer
#: from a customer who has ordered before (the soft opt-in); ``none`` anyone who did not say no.
ConsentPolicy = Literal["required", "soft-opt-in", "none"]


class QuietHours(Model):
    start: ClockTime
    end: ClockTime  # may be earlier than start: the window crosses midnight

    @model_validator(mode="after")
    def _a_window(self) -> "QuietHours":
        """``start: 21:00, end: 21:00`` was read as no quiet hours at all (an empty window), where
        a shop may have meant the whole day: neither is a window, so it is said."""
        if self.start == self.end:
            raise ValueError(f"end: the same time as start ({self.start:%H:%M}): no window (write quiet_hours: "
                             "null for none)")
        return self


class EligibilityConfig(Model):
    cutoff: Duration = timedelta(minutes=45)
    max_age: Duration = timedelta(days=7)
    # A sequence is only started when its step 1 came due at most this long ago (a first run, or
    # a run after cron was down, does not send week-old carts a "you forgot something").
    # ``backfill: 0`` skipped every cart as ``outside_backfill``: step 1 had always come due a
    # moment before the run looked, so no sequence ever started, and the config said nothing.
    backfill: Annotated[Duration, above_zero_for(
        "no sequence would ever start: step 1 has come due before a run sees it")] = timedelta(days=2)
    consent: ConsentPolicy = "soft-opt-in"
    # An order not delivered yet holds back its customer's reminders (pending_order) for this long
    # after it was placed; null: until delivered. A shop that never marks its orders delivered
    # (digital goods, pickup, fulfilment outside the shop) would otherwise never remind a customer
    # who has ordered once.
    pending_within: Duration | None = timedelta(days=30)
    one_message_per_day: bool = True
    # A step whose channel cannot reach the customer (SMS without a mobile number or SMS consent,
    # the call list without a phone number) goes out by e-mail (the tier's channel where that is
    # e-mail or a webhook) instead of ending the sequence; false: the cart is skipped for it.
    channel_fallback: bool = True
    quiet_hours: QuietHours | None = None
    # A total below 0 is no cart's: min_total: -1 let through every cart that 0 would, and said nothing.
    min_total: Decimal = Field(Decimal("0.01"), ge=0)
    bot_patterns: list[str] = Field(
        # Google's Merchant Center store checks fill carts as storebotmail.joonix.net addresses.
        default_factory=lambda: [r"^(bot|crawler|spider|test-crawler)[-_.+]", r"^noreply@", r"^no-reply@",
                                 r"@storebotmail\.joonix\.net$"]
    )
    disposable_domains: list[str] = Field(
        default_factory=lambda: ["mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com", "trashmail.com"]
    )

    @model_validator(mode="after")
    def _a_window_to_send_in(self) -> "EligibilityConfig":
        """A cart is due once idle for ``cutoff`` and too old after ``max_age``: with the cut-off
        the longer of the two, no cart is ever due, and nothing said so."""
        if self.cutoff >= self.max_age:
            raise ValueError(f"cutoff ({duration_text(self.cutoff)}) must be shorter than max_age "
                             f"({duration_text(self.max_age)}): no cart would ever be due")
        return self

    @field_validator("bot_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}")
        return patterns
