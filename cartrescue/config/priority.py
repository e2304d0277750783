"""The ``priority`` section: the scoring rules and the tiers, and the channel names a tier or a
step may send on.

Apart from the sequences, which name a tier's channel but do not rank carts.
"""

from decimal import Decimal
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from cartrescue.config.types import Model
from cartrescue.model import score_text

#: The largest a rule's weight may be, either way: scores are sums of weights, and two weights
#: of 1e308, each a float, summed to infinity, printed as ``Infinity`` in ``--json`` (no JSON).
MAX_WEIGHT = 1_000_000


class ValueRule(Model):
    weight: float = Field(40, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)  # .nan made every score NaN
    # A total below 0 is no cart's: threshold: -5 made every cart high value, and said nothing.
    threshold: Decimal = Field(Decimal("200"), ge=0)


class ReturningRule(Model):
    weight: float = Field(25, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)  # .nan made every score NaN
    min_orders: int = Field(1, ge=1)


class MarginRule(Model):
    weight: float = Field(20, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)  # .nan made every score NaN
    threshold: Decimal = Field(Decimal("0.4"), ge=0, le=1)


class OverstockRule(Model):
    weight: float = Field(15, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)  # .nan made every score NaN
    threshold: int = Field(100, ge=0)  # a stock below 0 is no item's: -100 matched every item
    skus: list[str] = Field(default_factory=list)


class Rules(Model):
    high_value: ValueRule = ValueRule()
    returning_customer: ReturningRule = ReturningRule()
    high_margin: MarginRule = MarginRule()
    overstock: OverstockRule = OverstockRule()


#: How a message reaches the customer (docs/channels.md): e-mail (SMTP), a row of the staff's call
#: list, an SMS through the provider, or a signed JSON POST to the shop's own automation.
ChannelName = Literal["email", "call-list", "sms", "webhook"]


CHANNELS: tuple[str, ...] = ("email", "call-list", "sms", "webhook")


class Tier(Model):
    name: str

    # A finite number: NaN equals no tier's min_score, its own neither, and stopped the config's
    # check of two tiers with one min_score on StopIteration (exit 70); .inf is a tier no cart reaches.
    min_score: float = Field(0, allow_inf_nan=False)
    sequence: str = "default"
    channel: ChannelName = "email"
    budget: int | None = Field(None, ge=0)  # at most this many carts per run (or day); None = no cap
    # "day": the budget is the shop's day's (its midnight to midnight), what the run before used
    # today counted, as staff who make five calls a day need from a cron that runs every ten minutes.
    budget_per: Literal["run", "day"] = "run"
    # What a send the budget has no room for becomes: "defer" (it waits for a run with room, up to
    # eligibility.backfill) or "email" (a text or call step goes by e-mail now, as when the
    # customer has no number: a customer the tier ranks high gets at least what a lower tier gets).
    over_budget: Literal["defer", "email"] = "defer"

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        """A tier named "" (or blanks) showed "–" in the report, and no template's ``tier == …``
        nor a reader of the call list could tell it."""
        if not value.strip():
            raise ValueError("a tier needs a name (e.g. high, rest)")
        return value

    @model_validator(mode="after")
    def _over_budget_needs_budget(self) -> "Tier":
        if self.over_budget != "defer" and self.budget is None:
            raise ValueError(f"over_budget: {self.over_budget} needs a budget (tier {self.name!r})")
        return self


class PriorityConfig(Model):
    rules: Rules = Rules()
    tiers: list[Tier] = Field(
        default_factory=lambda: [
            Tier(name="vip", min_score=85, channel="call-list", budget=5, budget_per="day", over_budget="email"),  # as config.example.yaml: a small top slice
            Tier(name="high", min_score=35),
            Tier(name="standard", min_score=0),
        ]
    )

    #: The tiers' names in the file's order: ``tiers`` is sorted highest first, and an error
    #: about a tier names it as the file lists it (:meth:`key`).
    _written: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("tiers")
    @classmethod
    def _unique(cls, tiers: list[Tier]) -> list[Tier]:
        if not tiers:
            raise ValueError("at least one tier is needed")
        names = [tier.name for tier in tiers]
        for index, name in enumerate(names):
            if names.index(name) != index:
                raise ValueError(f"[{index}].name: {name!r} is the name of tiers[{names.index(name)}] too: "
                                 "tier names must be unique")
        for index, tier in enumerate(tiers):  # the first listed would take every cart of both
            first = next(other for other in tiers if other.min_score == tier.min_score)
            if first is not tier:
                raise ValueError(f"[{index}].min_score: tiers {first.name!r} and {tier.name!r} have the same "
                                 f"min_score {score_text(tier.min_score)}: no cart would ever get tier {tier.name!r}")
        return tiers

    @model_validator(mode="after")
    def _highest_first(self) -> "PriorityConfig":
        self._written = tuple(tier.name for tier in self.tiers)
        object.__setattr__(self, "tiers", sorted(self.tiers, key=lambda tier: tier.min_score, reverse=True))  # frozen
        return self

    def listed(self) -> list[Tier]:
        """The tiers as the file lists them (``tiers`` is sorted highest first): a warning about
        each names them in the file's order."""
        order = {name: index for index, name in enumerate(self._written)}
        return sorted(self.tiers, key=lambda tier: order.get(tier.name, len(order)))

    def key(self, tier: str) -> str:
        """``priority.tiers[1]``: the key of the tier named ``tier``, indexed as the file lists it."""
        return f"priority.tiers[{self._written.index(tier)}]" if tier in self._written else "priority.tiers"
