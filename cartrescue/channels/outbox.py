"""Outbox channel: every message becomes a file in a folder: an RFC 5322 ``.eml`` for e-mail,
the text of an SMS as ``.sms.txt``, the webhook's JSON document as ``.json``.

Owns writing files atomically (write to a temporary name, then rename), so a crash never leaves
half a message that looks delivered. Used by ``run --outbox DIR``, which counts it as delivery
in the ledger; ``run --eml DIR`` writes the same files from a dry-run, recording nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from cartrescue import private
from cartrescue.channels.base import Channel, Envelope, Outcome, Status
from cartrescue.text import path_text

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# What each channel's bytes are: a MIME message, the text of an SMS, the webhook's JSON document.
_SUFFIX = {"email": ".eml", "sms": ".sms.txt", "webhook": ".json"}
SUFFIXES = tuple(_SUFFIX.values())  # what ``forget --files`` looks for among the ledger's replies


def file_for(folder: Path, stem: str, channel: str | None) -> Path:
    """The file of one message in ``folder``: ``stem`` made safe, plus its channel's suffix.

    A stem that needed more than its key's ``:`` replaced gets a digest of itself too: carts
    ``x/1`` and ``x_1`` both made ``csv_x_1-step1.eml``, and one customer's message replaced the
    other's without a word (``run --eml``, whose names carry no claim id)."""
    safe = _UNSAFE.sub("_", stem)
    if _UNSAFE.search(stem.replace(":", "_", 1)):
        import hashlib

        safe += "-" + hashlib.blake2b(stem.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return folder / f"{safe}{_SUFFIX.get(channel or 'email', '.eml')}"


def write_file(target: Path, data: bytes) -> Path:
    """``data`` written whole or not at all (a temporary name, then a rename). Used by the
    outbox and by ``run --eml``'s dry-run.

    The file is the owner's alone (0600), whatever the umask: it holds a customer's address,
    name and cart, and under umask 022 every account on the machine could read it. A ``.part``
    left by a killed run goes first: opening it would keep its mode."""
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)
    with open(partial, "wb", opener=private.opener) as handle:
        handle.write(data)
    os.replace(partial, target)
    return target


class OutboxChannel(Channel):
    transport = "outbox"
    take_size = 16  # claimed a few at a time: a kill leaves at most these without outcome

    def __init__(self, folder: Path, *, label: str = "") -> None:
        """``label`` goes before the id in each file's name: ``send-test`` numbers its tests
        apart from a run's claims, and its test #2 replaced a customer's message #2 (``test2``)."""
        self.folder = folder
        self.label = label
        folder.mkdir(parents=True, exist_ok=True)

    def filename(self, envelope: Envelope) -> Path:
        decision = envelope.decision
        return file_for(self.folder, f"{decision.cart.key}-step{decision.step}-{self.label}{envelope.claim_id}",
                        decision.channel)

    @staticmethod
    def _bytes(envelope: Envelope) -> bytes:
        """The file's content: what the channel would send. A webhook document gets its ledger
        id (``"id"``) as the real POST does (:func:`cartrescue.channels.webhook.document`)."""
        from cartrescue.compose.mime import build_message

        if envelope.data is None:
            return build_message(envelope.message)  # type: ignore[arg-type]
        if envelope.decision.channel == "webhook" and envelope.data.startswith(b"{"):
            from cartrescue.channels.webhook import document

            return document(envelope.data, envelope.claim_id)
        return envelope.data

    def deliver(self, batch: Sequence[Envelope]) -> Iterator[Outcome]:
        for envelope in batch:
            if envelope.message is None and envelope.data is None:
                yield Outcome(envelope.claim_id, Status.PERMANENT, "no message to write")
                continue
            target = self.filename(envelope)
            try:
                data = self._bytes(envelope)
                write_file(target, data)
            except OSError as exc:
                yield Outcome(envelope.claim_id, Status.TRANSIENT, f"cannot write {path_text(target)}: {exc.strerror or exc}")
                continue
            except ValueError as exc:  # a message that cannot be built (normally caught before the claim)
                yield Outcome(envelope.claim_id, Status.PERMANENT, f"cannot write: {exc}")
                continue
            yield Outcome(envelope.claim_id, Status.SENT, path_text(target))
