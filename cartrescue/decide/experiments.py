"""A/B variants and the holdout: which arm an address is in, decided by a stable hash.

Owns the assignment only: ``blake2b(salt | normalized address)`` read as a number in [0, 1) and
cut by the configured shares. The same address always lands in the same arm (across runs,
processes and machines), so a customer sees one variant throughout, and a held-out customer
gets no message of that sequence at all. It must not render, claim or record anything: the
planner asks, the ledger stores the answer (``cr_message.variant``, status ``held_out``).

Two independent draws per address:

- the **holdout** draw uses ``{salt}:holdout`` only, so an address held out of one sequence is
  held out of every sequence with the same or a larger share (reports compare like with like);
- the **variant** draw uses ``{salt}:variant:{experiment}`` where the experiment is the step's
  ``experiment`` or else the sequence's name, so steps of one sequence with the same variants
  put an address in the same arm, while separate experiments are not correlated.

With holdout share ``h`` and relative weights ``w_i``, arm ``i`` gets ``(1 - h) * w_i / sum(w)``
of the addresses.

The draw decides only where a cart's stream **starts** in an experiment. A cart whose earlier
step of the same experiment went out with a variant keeps that variant (read back from the
ledger, ``SentStep.variant``) while the later step still has it: changing the weights or adding
an arm mid-test moves only new streams, never a customer half-way through the sequence. For the
same reason a promoted winner (``report.auto_promote``) decides the arm of streams that start
after it; a stream already in another arm finishes in it. A stream starts when its first step
of the experiment goes out (its claim's time), so one that started after the promotion
gets the winner at the promoted step even where its earlier steps were drawn into another arm
(those steps had no winner when they went out).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from cartrescue.config import Config, Step
from cartrescue.contacts import normalize_email
from cartrescue.ledger import Promoted, SentStep
from cartrescue.model import Cart

_SCALE = float(1 << 64)
#: Statuses of a step whose variant a customer saw (or may have: claimed, unconfirmed).
_WENT_OUT = frozenset({"claimed", "unconfirmed", "sent"})


def unit(key: str, salt: str) -> float:
    """A uniform number in [0, 1) from ``key`` and ``salt`` (blake2b, 64 bits)."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def subject(cart: Cart) -> str:
    """Who is assigned: the normalized address, else the phone, else the cart itself."""
    email = normalize_email(cart.customer.email)
    if email:
        return email
    phone = "".join(ch for ch in cart.customer.phone or "" if ch.isdigit() or ch == "+")
    return f"tel:{phone}" if phone else f"cart:{cart.key}"


def pick(draw: float, weights: Mapping[str, float]) -> str:
    """The arm whose cumulative-weight interval holds ``draw``; names are taken in sorted order
    so reordering the YAML keys never reshuffles addresses."""
    names = sorted(weights)
    total = sum(weights[name] for name in names)
    edge = 0.0
    for name in names:
        edge += weights[name] / total
        if draw < edge:
            return name
    return names[-1]  # float rounding at the top end


def step_variants(config: Config, sequence: str | None, step: int) -> Collection[str]:
    """The variants ``step`` (1-based) of ``sequence`` has in the config; none where the config no
    longer has that step (its sequence renamed, its steps cut)."""
    found = config.sequences.get(sequence or "")
    return found.steps[step - 1].variants if found is not None and 0 < step <= len(found.steps) else ()


def offered(config: Config, sequence: str, step: int, variant: str) -> bool:
    """Whether ``step`` (1-based) of ``sequence`` still has ``variant`` in the config: a run
    gives a promoted winner only there, so ``report`` promotes no other."""
    return variant in step_variants(config, sequence, step)


class Experiments:
    """Assignment for one config; cheap to build, safe to share across threads."""

    def __init__(self, config: Config, promoted: Mapping[tuple[str, int], Promoted] | None = None) -> None:
        """``promoted``: ``{(sequence, step): winner}`` that ``report`` promoted
        (``report.auto_promote``); such a step gives that variant to every stream that starts
        after the promotion."""
        salt = config.experiments.salt
        self.holdout_salt = f"{salt}:holdout"
        self.variant_salt = f"{salt}:variant:"
        self.sequences = config.sequences
        # Each sequence's holdout share and each step's variants, as plain values: the planner
        # asks for every send, and a read of a config model's field costs ~450 instructions.
        self._holdout = {name: sequence.holdout for name, sequence in config.sequences.items()}
        self._variants = {name: tuple(step.variants for step in sequence.steps)
                          for name, sequence in config.sequences.items()}
        self.promoted = {key: winner for key, winner in (promoted or {}).items()
                         if offered(config, key[0], key[1], winner.variant)}

    def assigns(self, sequence: str, step: int) -> bool:
        """Whether :meth:`held_out` or :meth:`variant` of ``step`` (1-based) of ``sequence`` look at
        who is asked (a holdout, or variants): else the caller need not work out who it is."""
        return self._holdout[sequence] > 0 or bool(self._variants[sequence][step - 1])

    def held_out(self, key: str, sequence: str) -> bool:
        share = self._holdout[sequence]
        return share > 0 and unit(key, self.holdout_salt) < share

    def variant(self, key: str, sequence: str, step: int, sent: Sequence[SentStep] = ()) -> str | None:
        """The arm for ``step`` (1-based) of ``sequence``, or ``None`` when it has no variants.

        ``sent``: the cart's steps in the ledger. A stream that started (its first step of this
        experiment went out) after this step's promotion, or has not started, gets the
        winner; one that started before keeps the arm an earlier step went out in (see the module
        docstring) while this step has it, else the winner, else the draw."""
        if not self._variants[sequence][step - 1]:
            return None
        definition: Step = self.sequences[sequence].steps[step - 1]
        experiment = definition.experiment or sequence
        kept, started = self._stream(sent, experiment, step, sequence)
        promoted = self.promoted.get((sequence, step))
        if promoted is not None and (started is None or started > promoted.at):
            return promoted.variant
        if kept in definition.variants:
            return kept
        if promoted is not None:
            return promoted.variant
        return pick(unit(key, self.variant_salt + experiment), definition.variants)

    def _stream(self, sent: Sequence[SentStep], experiment: str, step: int,
                sequence: str) -> tuple[str | None, datetime | None]:
        """The cart's stream in ``experiment`` before ``step``: the variant of the latest earlier
        step that went out with one (kept), and when the earliest such step went out (when the
        stream started; ``None``: it has not)."""
        latest: SentStep | None = None
        started: datetime | None = None
        for entry in sent:
            if entry.variant is None or entry.step >= step or entry.status not in _WENT_OUT:
                continue
            owner = entry.sequence or sequence
            steps = self.sequences[owner].steps if owner in self.sequences else ()
            if entry.step > len(steps):
                continue  # a sequence (or step) the config no longer has
            if (steps[entry.step - 1].experiment or owner) != experiment:
                continue
            if latest is None or entry.step > latest.step:
                latest = entry
            if started is None or entry.at < started:
                started = entry.at
        return (latest.variant, started) if latest is not None else (None, None)

    def shares(self, sequence: str, step: int) -> dict[str, float]:
        """The expected share of every arm of a step, the holdout included (for reports, docs)."""
        holdout = self.sequences[sequence].holdout
        weights = self.sequences[sequence].steps[step - 1].variants or {"": 1.0}
        total = sum(weights.values())
        shares = {name: (1 - holdout) * weight / total for name, weight in weights.items()}
        if holdout:
            shares["holdout"] = holdout
        return shares
