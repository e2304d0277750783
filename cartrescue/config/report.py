"""The ``report`` and ``doctor`` sections: what the report attributes and costs, and when
``doctor`` calls reminders stopped.

Apart because nothing a run sends reads them.
"""

from datetime import timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import Field, field_validator

from cartrescue.config.priority import CHANNELS
from cartrescue.config.types import Duration, above_zero, above_zero_for, Model


class ReportConfig(Model):
    """``cartrescue report`` (docs/reporting.md): attribution, costs and when an A/B test has a winner."""

    attribution_window: Duration = timedelta(days=5)  # an order this long after a message is "recovered"
    period: Duration = timedelta(days=7)  # the default --since: this long before --until
    costs: dict[str, Decimal] = Field(default_factory=dict)  # per message and channel: {email: 0.001, call-list: 2.5}
    margin: Decimal | None = Field(None, ge=0, le=1)  # gross margin share of revenue; None: net revenue only
    free_shipping_cost: Decimal = Field(Decimal("0"), ge=0)  # what a free_shipping incentive costs per order
    min_sample: int = Field(1000, ge=1)  # recipients per variant before a winner can be named
    win_probability: float = Field(0.95, gt=0.5, lt=1)  # P(best) the leading variant needs to win
    auto_promote: bool = False  # `report` promotes a winner: streams that start later get it at that step
    precision: float = Field(0.01, gt=0, lt=1)  # the lift interval half-width worth having (0.01 = ±1 point)

    @field_validator("attribution_window", "period")
    @classmethod
    def _a_while(cls, value: timedelta) -> timedelta:
        """``period: 0`` was taken, and every report then said "--since … is not before now",
        naming an option nobody gave."""
        return above_zero(value)

    @field_validator("costs")
    @classmethod
    def _non_negative(cls, costs: dict[str, Decimal]) -> dict[str, Decimal]:
        for channel, cost in costs.items():
            if channel not in CHANNELS:
                from difflib import get_close_matches

                close = get_close_matches(channel, CHANNELS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ValueError(f"unknown channel {channel!r}{hint}: the keys are {', '.join(CHANNELS)}")
            if cost < 0:
                raise ValueError(f"{channel}: a cost cannot be negative, got {cost}")
        return costs


class DoctorConfig(Model):
    """``cartrescue doctor``: what counts as "reminders have silently stopped"."""

    # No successful non-dry-run run for this long: exit 5 (0 failed doctor right after each run).
    stale_after: Annotated[Duration, above_zero_for(
        "doctor would call reminders stopped right after each run that went well")] = timedelta(hours=2)
