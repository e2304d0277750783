"""The ``sequences`` section: each sequence's steps, their incentives and code pools.

Apart from the tiers (:mod:`cartrescue.config.priority`) that choose a sequence.
"""

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cartrescue.config.priority import ChannelName, Tier
from cartrescue.config.types import NAME, Duration, Model, above_zero_for

_CODE_PLACEHOLDER = re.compile(r"\{([a-z]+)(?::(\d+))?\}")


class CodeSource(Model):
    """Per-recipient codes of an incentive: a pool file (each code once) or a generating pattern.

    Codes live in the ledger (``cr_code``) under ``pool``; see docs/templates.md#incentives.
    """

    pool: str  # the pool's name in the ledger (`cartrescue codes list --pool NAME`)
    file: Path | None = None  # one code per line, imported into the pool; relative to the config file
    pattern: str | None = None  # e.g. "CR-{random:8}": {random:N} = N characters of A-Z/2-9, N >= 6

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"expected a short lower-case name like comeback10, got {value!r}")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return value
        placeholders = _CODE_PLACEHOLDER.findall(value)
        if not placeholders or any(name != "random" or not size or int(size) < 6 for name, size in placeholders):
            raise ValueError(f"expected a pattern with {{random:N}} (N >= 6) and nothing else in braces, got {value!r}")
        if len(_CODE_PLACEHOLDER.sub("", value)) + sum(int(size) for _name, size in placeholders) > 64:
            raise ValueError("codes longer than 64 characters do not fit the ledger")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "CodeSource":
        if (self.file is None) == (self.pattern is None):
            raise ValueError("give exactly one of 'file' (a pool of codes) or 'pattern' (generated codes)")
        return self


class Incentive(Model):
    kind: Literal["percent", "fixed", "free_shipping"]
    value: Decimal = Decimal("0")
    code: str | None = None  # one fixed code for everyone; for per-recipient codes use `codes`
    codes: CodeSource | None = None  # unique code per recipient and step, allocated at delivery
    # The expiry shown in the message: delivery + valid_for. ``valid_for: 0`` was taken as "until
    # the end of today": a code sent at 23:50 died ten minutes later, and nothing said so.
    valid_for: Annotated[Duration, above_zero_for(
        "a code valid for no time: it would die the day it is sent, at midnight")] = timedelta(days=3)

    @model_validator(mode="after")
    def _code_or_codes(self) -> "Incentive":
        if self.code is not None and self.codes is not None:
            raise ValueError("give either 'code' (one shared code) or 'codes' (one per recipient), not both")
        # A message that promises "110 % off" (or "0 % off") goes to every customer of the step.
        if self.kind == "percent" and not 0 < self.value <= 100:
            raise ValueError(f"a percent incentive's value is above 0 and at most 100 (got {self.value})")
        if self.kind == "fixed" and not self.value > 0:
            raise ValueError(f"a fixed incentive's value is an amount above 0 (got {self.value})")
        return self


class Step(Model):
    delay: Duration
    template: str
    incentive: Incentive | None = None
    # per-tier incentives for this step: {tier name: incentive or null}; other tiers get `incentive`
    tier_incentives: dict[str, Incentive | None] = Field(default_factory=dict)
    # A/B variants: {name: weight}; a variant renders <template>@<name>.* where that file exists,
    # else the base file. Weights are relative and split the share that is not held out.
    variants: dict[str, float] = Field(default_factory=dict)
    experiment: str | None = None  # assignment salt; steps sharing it (default: the sequence) share arms
    # The channel of this step (None: the tier's), and per tier instead of it: {high: sms}.
    channel: ChannelName | None = None
    tier_channels: dict[str, ChannelName] = Field(default_factory=dict)

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, variants: dict[str, float]) -> dict[str, float]:
        for name, weight in variants.items():
            if not NAME.match(name):
                raise ValueError(f"variant names are short lower-case names like a, b or urgent; got {name!r}")
            if not 0 < weight < float("inf"):  # .inf took every customer into the last arm, .nan none
                raise ValueError(f"variant {name!r}: the weight must be a number above 0, got {weight}")
        if len(variants) == 1:
            raise ValueError("one variant is no test: give two or more, or none")
        return variants

    def channel_for(self, tier: "Tier") -> str:
        """The channel this step goes out on for a cart of ``tier``: its ``tier_channels`` entry,
        else the step's ``channel``, else the tier's."""
        return self.tier_channels.get(tier.name) or self.channel or tier.channel

    def incentive_for(self, tier: str | None) -> Incentive | None:
        """The incentive for a cart of ``tier``: its own entry in ``tier_incentives``, else ``incentive``."""
        if tier is not None and tier in self.tier_incentives:
            return self.tier_incentives[tier]
        return self.incentive


class Sequence(Model):
    steps: list[Step]
    holdout: float = Field(0.0, ge=0, lt=1)  # share of addresses that get no message (measures lift)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[Step]) -> list[Step]:
        if not steps:
            raise ValueError("a sequence needs at least one step")
        delays = [step.delay for step in steps]
        if delays != sorted(delays) or len(set(delays)) != len(delays):
            raise ValueError("step delays must strictly increase")
        return steps


def default_sequences() -> dict[str, Sequence]:
    return {
        "default": Sequence(
            steps=[
                Step(delay=timedelta(hours=1), template="reminder-1"),
                Step(delay=timedelta(hours=24), template="reminder-2"),
                Step(
                    delay=timedelta(hours=72),
                    template="reminder-3",
                    incentive=Incentive(kind="percent", value=Decimal("10"), code="COMEBACK10"),
                ),
            ]
        )
    }
