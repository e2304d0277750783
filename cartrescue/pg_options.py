"""PostgreSQL's ``options`` connection setting: ours added to the URL's, never in its place.

The ledger and the SQL sources pass settings of their own to every PostgreSQL connection
(``-c lock_timeout=15s``; ``-c default_transaction_read_only=on``) through the driver's
``options``. SQLAlchemy lets ``connect_args`` replace what the URL says, so a user's own
``?options=-csearch_path%3Dshop_a`` -- one schema per shop in one database, the agency's
layout -- was silently dropped, and every shop's ledger landed in ``public``: one lock and one
set of claims for all of them. Here both are kept, in the order that says who wins (for one
setting named twice, PostgreSQL takes the last).
"""

from __future__ import annotations

from typing import Any


def merged(url: Any, *, first: str = "", last: str = "") -> str:
    """``options`` for a connection to ``url`` (a SQLAlchemy URL): ``first`` (defaults the URL
    may override), then the URL's own ``options``, then ``last`` (what it may not override)."""
    given = url.query.get("options", ())
    own = [given] if isinstance(given, str) else list(given)
    return " ".join(part for part in (first, *own, last) if part)
