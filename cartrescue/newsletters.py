"""Which addresses got the shop's newsletter today: the facts behind ``newsletter_today``.

Owns asking the readers of the shop's other marketing sends (a CSV export of the newsletter
tool, the shop database's newsletter tables: see :class:`~cartrescue.sources.base.SendSource`)
about one chunk of addresses at a time, and keeping each address's latest send of the day. The
rule that acts on it lives in :class:`cartrescue.decide.sequence.Calendar`; this module must not
decide anything nor hold more than one chunk's sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from cartrescue.model import MarketingSend
from cartrescue.sources.base import SendSource, Window

if TYPE_CHECKING:
    from cartrescue.config import Config


def today(config: Config, now: datetime) -> Window:
    """The sends that count for a run at ``now``: from the shop's midnight to ``now``."""
    from cartrescue.decide.sequence import Calendar

    return Window(Calendar(config.eligibility, config.shop.tz).local_day_start(now), now)


class Newsletters:
    """The sends of one shop-local day up to now, answered per chunk of addresses.

    ``window`` runs from the shop's midnight to the run's ``now``: a send scheduled for later
    today is not in any reader's data yet (or not due), so it does not count.
    """

    def __init__(self, readers: Sequence[SendSource], window: Window) -> None:
        self.readers = list(readers)
        self.window = window
        self._asked = False

    def latest(self, emails: Sequence[str]) -> dict[str, MarketingSend]:
        """Each of ``emails`` that got a send in the window, with its latest send."""
        unique = sorted(set(emails))
        found: dict[str, MarketingSend] = {}
        if not unique:
            return found
        self._asked = True
        for reader in self.readers:
            for send in reader.sends_for(unique, self.window):
                if send.sent_at in self.window:
                    known = found.get(send.email)
                    if known is None or send.sent_at > known.sent_at:
                        found[send.email] = send
        return found

    def notes(self) -> list[str]:
        """Why a reader saw nothing although asked (a plugin's tables are missing), once each."""
        if not self._asked:
            return []
        return list(dict.fromkeys(note for reader in self.readers for note in reader.sends_notes()))
