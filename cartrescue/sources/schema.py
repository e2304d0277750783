"""Column types of a shop's tables, checked once per run before a preset reads them.

Owns the answer to "can the preset read this column as it is typed here?". A preset declares the
columns whose type matters to it (times it filters or converts, amounts, ids it compares); the
first read of a run asks SQLAlchemy's inspector for those tables' columns (one cheap catalog
query per table) and either accepts each column, accepts it as a documented variant, or stops
the run with a :class:`~cartrescue.errors.SourceError` (exit 3) naming table and column. Schema
drift is then loud: a retyped column can no longer give an empty run that looks fine.

Documented variants (docs/databases.md, "Column types"):

* a time column typed as a whole number (``BIGINT``, as some migrations leave them) holds
  seconds since 1970 (UTC): windows are bound as such numbers and values converted. A window
  column's first non-null value is looked at once, so that other whole-number encodings
  (milliseconds, ``20260329090000``) are refused instead of matching nothing;
* an amount typed as text is parsed row by row (a bad value costs its row);
* a flag typed ``BOOLEAN`` (PostgreSQL, where ``is_active = 1`` is an error: boolean is no
  integer there) is compared as a boolean (:meth:`Schema.flag`).

It must not read carts or decide anything; a missing table or column is left to the query
that needs it (whose error already names it), or to the preset that reads an optional column
where :meth:`Schema.has` says it is there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cartrescue.errors import SourceError

TIME, NUMBER, INTEGER = "time", "number", "integer"
NATIVE, EPOCH, BOOLEAN = "native", "epoch", "boolean"

#: What each kind of column is read as, for messages.
_READ_AS = {
    TIME: "a time (DATETIME, TIMESTAMP or DATE, or whole seconds since 1970)",
    NUMBER: "a number (DECIMAL, an integer or numeric text)",
    INTEGER: "a whole number (an integer type)",
}
#: For each kind, the type families accepted and how they are read.
_ACCEPTED = {
    TIME: {"time": NATIVE, "integer": EPOCH},
    NUMBER: {"number": NATIVE, "integer": NATIVE, "text": NATIVE},
    INTEGER: {"integer": NATIVE, "number": NATIVE, "boolean": BOOLEAN},
}
#: Seconds since 1970 lie in [1973, 2286); a value outside is another encoding.
_EPOCH_RANGE = (10**8, 10**10)


def family(sa_type: Any) -> str:
    """The family of a reflected SQLAlchemy type: time, integer, boolean, number, text or other."""
    import sqlalchemy as sa

    if isinstance(sa_type, (sa.types.DateTime, sa.types.Date)):
        return "time"
    if isinstance(sa_type, sa.types.Boolean):
        return "boolean"
    if isinstance(sa_type, sa.types.Integer):
        return "integer"
    if isinstance(sa_type, sa.types.Numeric):
        return "number"
    if isinstance(sa_type, (sa.types.String, sa.types.Enum)):
        return "text"
    return "other"


def _type_name(sa_type: Any) -> str:
    try:
        return str(sa_type)
    except Exception:  # noqa: BLE001 - some reflected types cannot compile without a dialect
        return type(sa_type).__name__.upper()


@dataclass(slots=True)
class Schema:
    """How a run reads each checked column (``native`` or ``epoch``)."""

    variants: dict[tuple[str, str], str] = field(default_factory=dict)

    def epoch(self, table: str, column: str) -> bool:
        return self.variants.get((table, column)) == EPOCH

    def has(self, table: str, column: str) -> bool:
        """Whether ``table.column`` is there (checked, and of a type the preset reads): a column a
        later version of the platform added (PrestaShop 1.7.7's ``order_cart_rule.deleted``) is
        read where it is, and an older schema keeps working without it."""
        return (table, column) in self.variants

    def flag(self, column: str, table: str, name: str, value: int) -> str:
        """SQL that ``column`` (``table.name``) equals the flag ``value`` (0 or 1), as its type
        compares: ``= 1`` for an integer, ``= TRUE`` for a boolean."""
        if self.variants.get((table, name)) == BOOLEAN:
            return f"{column} = {'TRUE' if value else 'FALSE'}"
        return f"{column} = {value}"


def inspect(db: Any, kinds: Mapping[str, Mapping[str, str]], window_columns: tuple[tuple[str, str], ...],
            ) -> tuple[Schema, list[str]]:
    """The schema of ``kinds`` ({table: {column: kind}}) in ``db`` (a ShopDatabase), and one
    message per column the preset cannot read. Absent tables and columns are not reported here."""
    schema = Schema()
    problems: list[str] = []
    for table, columns in kinds.items():
        found = db.columns(table)
        if found is None:
            continue
        for column, kind in columns.items():
            sa_type = found.get(column.lower())
            if sa_type is None:
                continue
            variant = _ACCEPTED[kind].get(family(sa_type))
            where = f"{db.full_name(table)}.{column}"
            if variant is None:
                problems.append(f"column {where} is {_type_name(sa_type)}, but cartrescue reads it as "
                                f"{_READ_AS[kind]}; fix the column's type (see docs/databases.md, \"Column types\")")
                continue
            schema.variants[(table, column)] = variant
            if variant == EPOCH and (table, column) in window_columns:
                sample = db.first_value(table, column)
                if sample is not None and not _EPOCH_RANGE[0] <= _as_int(sample) < _EPOCH_RANGE[1]:
                    problems.append(f"column {where} holds whole numbers that are not seconds since 1970 "
                                    f"(for example {sample!r}); cartrescue reads a whole-number time column "
                                    "as UNIX seconds (see docs/databases.md, \"Column types\")")
    return schema, problems


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def raise_for(source: str, problems: list[str]) -> None:
    if problems:
        raise SourceError(f"{source} source: " + "; ".join(problems))
