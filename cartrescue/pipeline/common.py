"""What the planner and the executor both use: cutting a stream (carts, decisions) into chunks.

Separate so that neither imports the other for it: the executor takes the planner's decisions
as plain values and never imports the planner.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TypeVar


T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
