"""Shards: which part of the carts one worker of ``run --workers N`` / ``run --shard K/N`` owns.

Owns the one definition of "this cart belongs to shard K of N" and how a global number (a tier
budget, ``--limit``, the relay's quotas) is shared among N shards. It must not read carts, talk
to the ledger or start processes (:mod:`cartrescue.workers` does that).

A cart belongs to the shard of its customer (:func:`~cartrescue.decide.newest.customer_key`): the
normalized address, else, for a cart without one, the phone number in E.164 (read in the shop's
region, :attr:`Shard.region`), so one customer -- their newest cart, their one reminder stream,
their one message a day -- lives in exactly one shard. Only a cart with neither goes by its cart
key (it competes with no other cart). The hash is BLAKE2b (stable across processes, hosts and
Python versions, unlike ``hash()``), its first 8 bytes taken as a big-endian integer modulo N.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from hashlib import blake2b

from cartrescue.contacts import fold_email
from cartrescue.decide.newest import customer_key

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
MAX_SHARDS = 256


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``. ``Shard(1, 1)`` is the whole, unsharded run.

    ``region``: the shop's (``Config.phone_region``), which the number of a customer without an
    address is read in to find their shard (``070-123 45 67`` and ``+46701234567`` are one
    customer, in one shard); a run sets it (:meth:`in_region`, :func:`cartrescue.job.run_shard`)."""

    index: int
    count: int
    region: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"2/4"`` -> ``Shard(2, 4)``; ``ValueError`` with a message a person can act on."""
        match = _SPEC.match(text)
        if not match:
            raise ValueError(f"expected K/N like 2/4 (shard K of N), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= count <= MAX_SHARDS:
            raise ValueError(f"N must be between 1 and {MAX_SHARDS}, got {text!r}")
        if not 1 <= index <= count:
            raise ValueError(f"K must be between 1 and N, got {text!r}")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def lock_name(self) -> str:
        """The ledger lock row of this shard: ``run`` for an unsharded run (as ledgers always had)."""
        return "run" if self.count == 1 else f"run:{self.index}/{self.count}"

    def owns(self, email: str | None, cart_key: str, phone: str | None = None) -> bool:
        """Does this shard own the cart of ``email`` (without one, of the number ``phone``; with
        neither, of ``cart_key``)? Every reader of a shard's carts and ledger rows asks this."""
        if self.count == 1:
            return True
        return owner(email, cart_key, self.count, phone, self.region) == self.index

    def in_region(self, region: str | None) -> "Shard":
        """This shard, its customers' numbers read in ``region`` (the shop's)."""
        return self if region == self.region else Shard(self.index, self.count, region)

    def share(self, total: int) -> int:
        """This shard's part of ``total``: ``total // N``, one more for the first ``total % N`` shards.

        The parts add up to ``total`` exactly, and no two differ by more than one.
        """
        return total // self.count + (1 if self.index <= total % self.count else 0)


def owner(email: str | None, cart_key: str, count: int, phone: str | None = None, region: str | None = None) -> int:
    """The 1-based shard of ``count`` that owns the cart of ``email`` (without one, of ``phone``
    read in ``region``; with neither, of ``cart_key``): the shard of :func:`shard_key`."""
    return shard_of(fold_email(email.strip()) if email else shard_key(None, phone, cart_key, region), count)


def shard_key(email: str | None, phone: str | None, cart_key: str, region: str | None) -> str:
    """What a cart is sharded by: its customer as the planner and the ledger know them.

    The address (:func:`~cartrescue.contacts.fold_email`: lower-cased alone, its composed and
    decomposed spellings, ``müller`` with ``ü`` or ``u`` and a combining diaeresis, went to two
    shards, each took its cart for the address's newest, and one person got two messages a
    day). Without one, the number in E.164 (:func:`~cartrescue.decide.newest.customer_key`'s key of
    such a customer): by its cart key, a customer's two carts went to two shards, each took its
    own for the newest, and the older cart's stream went on beside the newer one's. A cart with
    neither (or a number that is none) competes with no cart: its cart key."""
    if email:
        return fold_email(email.strip())
    return customer_key(None, phone, region) or cart_key


def shard_of(identity: str, count: int) -> int:
    """The 1-based shard of an address (normalized), a number (E.164) or a cart key."""
    digest = blake2b(identity.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


def lock_layout(name: str) -> int | None:
    """How many shards the run holding lock ``name`` belongs to (``run`` -> 1); ``None`` if unknown."""
    if name == "run":
        return 1
    match = re.fullmatch(r"run:(\d+)/(\d+)", name)
    return int(match.group(2)) if match else None


def compatible(first: str, second: str) -> bool:
    """May runs holding locks ``first`` and ``second`` run at the same time?

    Only different shards of one layout (the same N): an unsharded run excludes every other run,
    and shards of different layouts would own overlapping addresses.
    """
    if first == second:
        return False
    one, other = lock_layout(first), lock_layout(second)
    return one is not None and one == other and one > 1


@dataclass(frozen=True, slots=True)
class Coverage:
    """When every customer was last served by a successful run (``doctor``'s staleness).

    ``at``: None when no layout had every shard succeed. ``lagging``: the shard (``"K/N"``) whose
    success is that oldest one, when it was a sharded layout's; ``missing``: the shards of the
    newest layout with no success at all."""

    at: datetime | None
    lagging: str | None = None
    missing: tuple[str, ...] = ()


def coverage(last_success: Mapping[str, datetime], newest_layout: int | None = None) -> Coverage:
    """When a successful run last covered every customer, from each shard's last success
    (``""``: an unsharded run's; ``"K/N"``: shard K of N's).

    A shard serves only its part of the addresses: shard 2 of 4 failing every run while 1, 3
    and 4 succeed leaves a quarter of the customers without reminders, however recent the
    others' successes. So a layout of N shards covered everyone when its stalest shard last
    succeeded (never, while one of them has not); an unsharded run covers everyone. The answer
    is the newest of the layouts' (``--workers`` may choose another N as the carts grow).
    ``newest_layout``: the N of the latest run, whose shards without a success are named."""
    layouts: dict[int, dict[int, datetime]] = {}
    for name, at in last_success.items():
        shard = recorded_shard(name)
        if shard is not None:
            layouts.setdefault(shard.count, {})[shard.index] = at
    best = Coverage(None)
    for count, done in layouts.items():
        if len(done) < count:
            continue
        index, at = min(done.items(), key=lambda item: item[1])
        if best.at is None or at > best.at:
            best = Coverage(at, f"{index}/{count}" if count > 1 else None)
    if newest_layout and newest_layout > 1:
        done = layouts.get(newest_layout, {})
        missing = tuple(f"{k}/{newest_layout}" for k in range(1, newest_layout + 1) if k not in done)
        if missing:
            best = Coverage(best.at, best.lagging, missing)
    return best


def recorded_shard(text: str) -> Shard | None:
    """The shard a run recorded (``cr_run.shard``): ``""`` is the whole, unsharded run; None for
    what is no shard (never written by cartrescue)."""
    if not text:
        return Shard(1, 1)
    try:
        return Shard.parse(text)
    except ValueError:
        return None
