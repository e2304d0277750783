"""Shop databases over SQLAlchemy, and the generic ``sql`` source (named queries).

Owns what every database source shares: opening a connection from a URL (PostgreSQL through
psycopg 3, MySQL/MariaDB through PyMySQL, SQLite), keeping it read-only, streaming result sets,
turning driver errors into one-line :class:`~cartrescue.errors.SourceError` messages, and
converting database values (naive times, decimals, flags, currency codes) into the domain's.
The presets (:mod:`~cartrescue.sources.magento`, :mod:`~cartrescue.sources.woocommerce`,
:mod:`~cartrescue.sources.prestashop`) build on it.

It must never write to a shop's database. Three layers make sure:

1. the server enforces it: MySQL/MariaDB sessions run ``SET SESSION TRANSACTION READ ONLY``,
   PostgreSQL sessions start with ``default_transaction_read_only=on``, SQLite files are opened
   with ``?mode=ro`` and ``PRAGMA query_only``;
2. every statement passes :func:`read_only_guard` before it reaches the driver;
3. values are always bound parameters; the only text put into SQL is a validated table prefix.

SQLAlchemy is imported lazily so that ``cartrescue --help`` stays fast.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from zoneinfo import ZoneInfo

from cartrescue.contacts import is_valid_email, normalize_email, normalize_phone
from cartrescue.drivers import (SOURCE_STATEMENT_WAIT, connect_deadline, missing_driver, statement_deadline,
                                stopped_answering, timed_out)
from cartrescue.errors import ConfigError, SourceError
from cartrescue.model import Cart, Customer, LineItem, MarketingSend, Order, RowProblem
from cartrescue.sources.apart import Apart, ApartIds
from cartrescue.sources.base import (
    Activity,
    CartSource,
    OrderFilter,
    ProblemSink,
    ProgressTotal,
    Window,
    ignore_problem,
)
from cartrescue.sources.schema import Schema, raise_for
from cartrescue.sources.schema import inspect as inspect_schema
# Re-exported for the presets: the order rules (IGNORED_ORDER_STATUSES, REFUNDED, RUN_IGNORED_ORDER_STATUSES,
# refunded_whole, order_status) and RowError
from cartrescue.sources.values import (  # noqa: F401
    FALSE_WORDS,
    IGNORED_ORDER_STATUSES,
    REFUNDED,
    RUN_IGNORED_ORDER_STATUSES,
    STOCK_LIMIT,
    TRUE_WORDS,
    RowError,
    bounded_amount,
    order_status,
    bounded_quantity,
    in_stock_range,
    OWNER_FIELDS,
    normalize_locale,
    owner_conflict,
    parse_currency,
    parse_decimal,
    parse_delivered,
    refund_amount,
    refunded_whole,
)
from cartrescue.sources.values import bit_value, campaign_name, parse_bool, refuse_nul, refuse_unkeepable_owner
from cartrescue.sqlite_url import sqlite_file

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Engine

T = TypeVar("T")
UTC = timezone.utc

_PREFIX = re.compile(r"^[A-Za-z0-9_]*$")
_EARLIEST = datetime(1000, 1, 2, tzinfo=timezone.utc)
_LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)


# --------------------------------------------------------------------------------------------
# Read-only guard
# --------------------------------------------------------------------------------------------

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_LITERALS = re.compile(r"'(?:[^']|'')*'")
_FIRST_WORD = re.compile(r"^\s*\(*\s*([A-Za-z]+)")
_READ_VERBS = frozenset({"SELECT", "WITH", "SHOW", "EXPLAIN", "DESCRIBE", "DESC", "VALUES", "PRAGMA"})
_WRITE_WORDS = re.compile(
    r"\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|DROP|ALTER|CREATE|GRANT|REVOKE|CALL|"
    r"LOCK|COPY|VACUUM|ATTACH|DETACH|REINDEX|INTO|FOR\s+UPDATE|FOR\s+SHARE|LOCK\s+IN\s+SHARE\s+MODE)\b",
    re.IGNORECASE,
)


def read_only_guard(statement: str) -> None:
    """Refuse any statement that is not a plain read. Raises :class:`SourceError`.

    Comments and string literals are ignored, so ``WHERE status = 'update'`` is fine while
    ``WITH x AS (DELETE ...)``, ``SELECT ... INTO``, ``SELECT ... FOR UPDATE`` and
    ``PRAGMA x = 1`` are refused. The servers enforce read-only sessions as well; this guard
    makes a mistake fail before it reaches them, with a clear message.
    """
    code = _LITERALS.sub("''", _COMMENTS.sub(" ", statement))
    match = _FIRST_WORD.match(code)
    verb = match.group(1).upper() if match else ""
    if verb not in _READ_VERBS:
        raise SourceError(f"refusing to run a statement that is not a read: {_one_line(statement)[:80]!r}")
    if verb == "PRAGMA" and "=" in code:
        raise SourceError(f"refusing to run a PRAGMA that sets a value: {_one_line(statement)[:80]!r}")
    # EXPLAIN ANALYZE (PostgreSQL) and EXPLAIN/DESCRIBE ... (MySQL, with ANALYZE) run the statement
    # they explain: the one they carry must be a read too.
    if verb in ("SELECT", "WITH", "VALUES", "EXPLAIN", "DESCRIBE", "DESC"):
        hit = _WRITE_WORDS.search(code)
        if hit:
            raise SourceError(
                f"refusing to run a statement that could write ({hit.group(1).upper()}): "
                f"{_one_line(statement)[:80]!r}"
            )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_MISSING_TABLE = (
    re.compile(r"Table '([^']+)' doesn't exist"),
    re.compile(r'relation "([^"]+)" does not exist'),
    re.compile(r"no such table: (\S+)"),
)
_MISSING_COLUMN = (
    re.compile(r"Unknown column '([^']+)'"),
    re.compile(r'column "?([^" ]+)"? does not exist'),
    re.compile(r"no such column: (\S+)"),
)


_TABLE_NAME = r"([`\"]?[\w$]+[`\"]?(?:\.[`\"]?[\w$]+[`\"]?)?)"  # table or schema.table, maybe quoted


def _unaliased(column: str, statement: object) -> str:
    """``q.items_qty`` as ``mage_quote.items_qty``: the databases name a missing column by the
    alias the statement gave its table, which says nothing to someone who did not write it (a
    preset's query). The table is looked up in the statement's ``FROM``/``JOIN``; a bare name
    is given the statement's one table; otherwise the column is left as the database named it."""
    alias, dot, name = column.rpartition(".")
    if not isinstance(statement, str) or "." in alias:
        return column
    if not dot:  # a bare name (``telephone``): the table, when the statement reads only one
        # A subquery's tables (a preset's order reads its address's number in one) are not the
        # ones a bare name of the outer query is read from: the outer query's alone, when it names it.
        outer = _outer_query(statement)
        said = re.sub(r"\bAS\s+[`\"]?[\w$]+[`\"]?", "", outer, flags=re.IGNORECASE)  # an alias is no column
        named = re.search(rf"(?<![\w.$`\"]){re.escape(column)}(?![\w$])", said) is not None
        tables = {_unquoted(table) for table in re.findall(rf"\b(?:FROM|JOIN)\s+{_TABLE_NAME}",
                                                            outer if named else statement, re.IGNORECASE)}
        return f"{tables.pop()}.{column}" if len(tables) == 1 else column
    found = re.search(rf"\b(?:FROM|JOIN)\s+{_TABLE_NAME}\s+(?:AS\s+)?"
                      rf"[`\"]?{re.escape(alias)}[`\"]?(?![\w$])", statement, re.IGNORECASE)
    if found is None:
        return column
    return _unquoted(found.group(1)) + "." + name


def _outer_query(statement: str) -> str:
    """``statement`` without its subqueries (a parenthesized ``SELECT``), string literals kept
    whole (``REPLACE(x, '(', '')``)."""
    out: list[str] = []
    depth = 0  # inside a subquery: how many parentheses are open in it
    quote = ""
    at = 0
    while at < len(statement):
        char = statement[at]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "(" and (depth or re.match(r"\(\s*SELECT\b", statement[at:], re.IGNORECASE)):
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            at += 1
            continue
        if not depth:
            out.append(char)
        at += 1
    return "".join(out)


def _unquoted(name: str) -> str:
    return name.replace("`", "").replace('"', "")


def explain_error(exc: BaseException, where: str, own_queries: bool = False,
                  table_hints: Mapping[str, str] | None = None, key: str | None = None) -> str:
    """One line a shop owner can act on, for a driver or SQLAlchemy error. Never a password.
    ``own_queries``: the statements are the config's ``source.queries`` (``type: sql``), so a
    missing table or column is theirs to fix, not a preset's. ``key``: where the config names the
    URL (``cartrescue.yaml: source.url``), put before a failure to connect or log in: the fix is
    in that key (or the ``${VAR}`` it reads), and on a host of many shops the line said neither
    which config nor which key."""
    silent = stopped_answering(exc)
    if silent is not None:  # connected, then no answer: the line names the URL and the key
        return silent
    said = _explain_error(exc, where, own_queries, table_hints)
    if key and said.startswith(_CONNECT_FAILURES):
        return f"{key}: {said}"
    return said


#: How :func:`_explain_error` begins a line about what ``source.url`` says (the server, the
#: account and what it may read, the database's name), as opposed to a table or column inside
#: it: a table the account may not read is granted to the account that URL names.
_CONNECT_FAILURES = ("cannot connect to ", "cannot log in to ", "cannot open ", "permission denied in ")


def _explain_error(exc: BaseException, where: str, own_queries: bool,
                   table_hints: Mapping[str, str] | None) -> str:
    """:func:`explain_error`'s line, without the config key."""
    orig = getattr(exc, "orig", None) or exc
    text = _one_line(str(orig))
    code = orig.args[0] if getattr(orig, "args", None) and isinstance(orig.args[0], int) else None
    lower = text.lower()
    kind = type(exc).__name__
    if kind == "NoSuchModuleError" or "can't load plugin" in lower:
        return (f"unknown database type in {where} (use postgresql+psycopg://, mysql+pymysql:// "
                "or sqlite:///)")
    driver = missing_driver(orig, where)
    if driver is not None:
        return driver
    if kind == "ArgumentError":
        return f"not a usable database URL: {text}"
    # Before "refused": MySQL's 2003 also stands for a host name that does not resolve.
    if code == 2005 or "could not translate host name" in lower or "name or service not known" in lower \
            or "temporary failure in name resolution" in lower or "nodename nor servname" in lower:
        return f"cannot connect to {where}: unknown host"
    if code == 2003 or "connection refused" in lower:
        return f"cannot connect to {where}: connection refused (is the database server running?)"
    if timed_out(orig):
        return f"cannot connect to {where}: connection timed out"
    if code == 1044 or "permission denied for database" in lower:
        # The password was right: MariaDB's "Access denied for user … to database …" and
        # PostgreSQL's missing CONNECT, which read as "wrong user or password".
        need = "SELECT on the shop's tables" if code == 1044 else "CONNECT on it and SELECT on the shop's tables"
        return f"cannot log in to {where}: the account has no rights on this database (it needs {need})"
    if code == 1045 or "password authentication failed" in lower or "no password supplied" in lower \
            or "access denied for user" in lower or ("role" in lower and "does not exist" in lower):
        return f"cannot log in to {where}: access denied (wrong user or password)"
    if code == 1049 or ("database" in lower and "does not exist" in lower) or "unknown database" in lower:
        return f"cannot open {where}: the database does not exist"
    if "unable to open database file" in lower:
        return f"cannot open {where}: the SQLite file is missing or unreadable"
    for pattern in _MISSING_TABLE:
        match = pattern.search(text)
        if match:
            table = match.group(1).split(".")[-1]
            hint = next((text for name, text in (table_hints or {}).items() if table.lower().endswith(name)), None)
            if hint is None:
                hint = "check the table names in source.queries, and source.url" if own_queries else \
                    "check source.url and source.prefix"
            return f"table {table} not found in {where} ({hint})"
    for pattern in _MISSING_COLUMN:
        match = pattern.search(text)
        if match:
            hint = "check the column names in source.queries" if own_queries else \
                "does the schema match the preset's version?"
            column = _unaliased(match.group(1), getattr(exc, "statement", None))
            return f"column {column} not found in {where} ({hint})"
    if refused(exc):
        said = _driver_said(str(orig.args[1] if code is not None and len(orig.args) > 1 else orig))  # not "(1142, …)"
        return f"permission denied in {where}: {said} (the account needs SELECT on the shop's tables)"
    if code == 1792 or "read-only transaction" in lower or "read only transaction" in lower \
            or "readonly database" in lower:
        return f"refused in {where}: the statement would write, and the connection is read-only"
    return f"database error in {where}: {_driver_said(str(orig))}"


#: At most this much of what the database said (:func:`_driver_said`): its whole message, which
#: servers bound themselves (MariaDB quotes 80 characters of the statement, PostgreSQL a line of
#: it), never a page a driver might one day put there.
_SAID_MAX = 1000


def _driver_said(text: str) -> str:
    """What the driver said (``text``) of a statement it refused, its lines made one, all of it: cut at 200
    characters, MariaDB's syntax error (``... for the right syntax to use near 'FORM carts c JOIN
    cart_lines l ON ...' at line 3``) lost the text it named and its line, and PostgreSQL's its
    ``HINT:``. PostgreSQL's caret line (a ``^`` under the quoted statement) points at nothing once
    the lines are joined, so it goes."""
    said = _one_line(" ".join(line for line in text.splitlines() if line.strip() != "^"))
    return said if len(said) <= _SAID_MAX else said[:_SAID_MAX - 1] + "…"


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


def _sqlalchemy() -> Any:
    import sqlalchemy

    return sqlalchemy


def _prepare_url(raw: str) -> Any:
    """Parse the URL and point SQLite at a read-only file, a path and a ``file:`` URI alike: a
    writable open creates a missing file, and a shop's database is only ever read."""
    sa = _sqlalchemy()
    url = sa.engine.make_url(raw)
    path = sqlite_file(url)
    if path is not None:
        query = dict(url.query)
        query.update({"mode": "ro", "uri": "true"})
        database = url.database if sa.util.asbool(url.query.get("uri", False)) else path.as_uri()  # '#' or '?' quoted
        url = url.set(database=database, query=query)
    return url


def create_engine(raw_url: str, *, source: str = "sql", statement_wait: float | None = SOURCE_STATEMENT_WAIT,
                  key: str = "source.url", wait_key: str = "source.statement_wait",
                  connect_limit: float | None = None) -> "Engine":
    """An engine whose every connection is read-only and whose every statement is guarded, and
    answered within ``statement_wait`` seconds (``source.statement_wait``; None: unbounded) on
    PostgreSQL and MySQL/MariaDB: a server that stopped answering once connected held the run,
    and its lock, for good. ``key``: where the config names the URL, and ``wait_key`` what sets
    ``statement_wait``, for that error's line; ``connect_limit``: ``doctor --timeout``, where it is
    shorter than connecting may take (:func:`cartrescue.drivers.connect_deadline`)."""
    sa = _sqlalchemy()
    try:
        url = _prepare_url(raw_url)
    except Exception as exc:  # ArgumentError for malformed URLs
        raise SourceError(f"{source} source: not a database URL: {_mask(raw_url)}") from exc
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = connect_deadline(url, connect_limit)  # a server that never greets: an error, not a hang
    if backend == "postgresql":
        from cartrescue.pg_options import merged

        # The URL's own options (a search_path) stay; read-only and UTC come last: they hold.
        connect_args["options"] = merged(url, last="-c default_transaction_read_only=on -c TimeZone=UTC")
    try:
        engine = sa.create_engine(url, connect_args=connect_args, pool_size=3, max_overflow=2) \
            if backend != "sqlite" else sa.create_engine(url)
    except Exception as exc:
        raise SourceError(f"{source} source: {explain_error(exc, _mask(raw_url), key=key)}") from None
    statement_deadline(engine, url, statement_wait, f"{key} {_mask(raw_url)}", wait_key, connect_limit)

    @sa.event.listens_for(engine, "connect")
    def _read_only_session(dbapi_connection: Any, _record: Any) -> None:
        if backend == "postgresql":
            _lenient_pg_times(dbapi_connection)
        cursor = dbapi_connection.cursor()
        try:
            if backend in ("mysql", "mariadb"):
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
                # Magento writes TIMESTAMP columns in UTC; read them back unconverted.
                cursor.execute("SET time_zone = '+00:00'")
                # A streamed result may wait while the pipeline works on a chunk.
                cursor.execute("SET SESSION net_write_timeout = 3600")
            elif backend == "sqlite":
                cursor.execute("PRAGMA query_only = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _guard(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        read_only_guard(statement)

    return engine


@lru_cache(maxsize=1)
def _lenient_loaders() -> dict[str, type]:
    """psycopg loaders for timestamp/timestamptz/date that give PostgreSQL's ``infinity`` (and
    years past 9999, which Python cannot hold) as their text instead of failing the fetch."""
    import psycopg
    from psycopg.types import datetime as pg

    def lenient(base: Any) -> type:
        def load(self: Any, data: Any) -> Any:
            try:
                return base.load(self, data)
            except psycopg.DataError:
                return bytes(data).decode("utf-8", "replace")

        return type(f"Lenient{base.__name__}", (base,), {"load": load})

    return {"timestamp": lenient(pg.TimestampLoader), "timestamptz": lenient(pg.TimestamptzLoader),
            "date": lenient(pg.DateLoader)}


def _lenient_pg_times(dbapi_connection: Any) -> None:
    """One unreadable time costs its row (see :func:`as_utc`), not the whole result set."""
    adapters = getattr(dbapi_connection, "adapters", None)
    if adapters is None:  # another driver than psycopg 3
        return
    for name, loader in _lenient_loaders().items():
        adapters.register_loader(name, loader)


def _mask(raw_url: str) -> str:
    from cartrescue.text import masked_url

    return masked_url(raw_url)


class ShopDatabase:
    """A shop's database: read-only engine, quoting of prefixed table names, streaming, errors."""

    def __init__(self, url: str, *, source: str, prefix: str = "") -> None:
        if not _PREFIX.match(prefix or ""):
            raise ConfigError(f"source.prefix: only letters, digits and _ are allowed, got {prefix!r}")
        self.source = source
        self.prefix = prefix or ""
        self.own_queries = False  # `type: sql`: the queries are the config's, not a preset's
        self.table_hints: Mapping[str, str] = {}  # a preset's advice for one missing table
        #: tables of another prefix than ``prefix`` (a WordPress multisite's network-wide users)
        self.table_prefixes: Mapping[str, str] = {}
        self.where = self._where(url)
        self._url = url
        self._wait: tuple[float | None, str, str, float | None] = (SOURCE_STATEMENT_WAIT, "source.url",
                                                                   "source.statement_wait", None)
        self._engine: "Engine | None" = None

    @staticmethod
    def _where(url: str) -> str:
        try:
            parsed = _sqlalchemy().engine.make_url(url)
        except Exception:
            return "the shop database"
        if parsed.get_backend_name() == "sqlite":
            return f"SQLite database {parsed.database or ':memory:'}"
        host = parsed.host or "localhost"
        port = f":{parsed.port}" if parsed.port else ""
        return f"{parsed.get_backend_name()} database {parsed.database or ''} at {host}{port}"

    @property
    def engine(self) -> "Engine":
        if self._engine is None:
            self._engine = create_engine(self._url, source=self.source, statement_wait=self._wait[0], key=self._wait[1],
                                         wait_key=self._wait[2], connect_limit=self._wait[3])
        return self._engine

    def wait_for(self, seconds: float | None, key: str, wait_key: str = "source.statement_wait",
                 connect_limit: float | None = None) -> None:
        """Each statement's deadline (``source.statement_wait``; None: none), and ``key``: where
        the config names the URL (``cartrescue.yaml: source.url``), as :func:`create_engine`
        takes them, ``wait_key``: what sets ``seconds`` (``doctor --timeout`` may), and
        ``connect_limit`` (``doctor --timeout`` again); before the first connection."""
        self._wait = (seconds, key, wait_key, connect_limit)

    def config_key(self, key: str) -> str:
        """``key`` as a line names it, after the config file as ``source.url`` is named
        (``/srv/shop/cartrescue.yaml: source.options.shop_ids``): for what the database shows a
        setting of the source's to be wrong."""
        url_key = self._wait[1]
        return url_key[: -len("source.url")] + key if url_key.endswith("source.url") else key

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    def full_name(self, name: str) -> str:
        """The prefixed name of a shop table, as the database knows it (unquoted)."""
        return self.table_prefixes.get(name, self.prefix) + name

    def table(self, name: str) -> str:
        """The quoted, prefixed name of a shop table, safe to put into SQL text."""
        return self.engine.dialect.identifier_preparer.quote(self.full_name(name))

    def name_key(self, name: str) -> str:
        """``name`` as this database compares table names: PostgreSQL keeps a quoted name's
        capitals (the queries ask for "Shop_quote", which a folded shop_quote does not answer),
        where MySQL, MariaDB and SQLite may answer either case."""
        return name if self.backend == "postgresql" else name.lower()

    @contextmanager
    def errors(self, query: str | None = None) -> Iterator[None]:
        """Turn driver and SQLAlchemy errors into one-line :class:`SourceError`. ``query``: the
        config key of the statement (``source.queries.orders``, a ``sql`` source's own), named
        with the config file before what the database said of it (:meth:`_of_query`)."""
        sa = _sqlalchemy()
        try:
            yield
        except SourceError as exc:
            if str(exc).startswith(f"{self.source} source:"):
                raise
            raise SourceError(f"{self.source} source: {exc}") from None
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            said = explain_error(exc, self.where, self.own_queries, self.table_hints, self._wait[1])
            raise SourceError(f"{self.source} source: {self._of_query(said, exc, query)}") from None

    def _of_query(self, said: str, exc: BaseException, query: str | None) -> str:
        """``said`` after the config file and ``query``, the key of the statement that failed,
        unless it is about ``source.url`` (connecting, logging in, a server that stopped
        answering): with several queries, a syntax error or a misnamed table or column (``near
        "order": syntax error``) named neither the query nor the file, and the developer had to
        guess which of them to fix."""
        if query is None or stopped_answering(exc) is not None or said.startswith(self._wait[1]) \
                or said.startswith(_CONNECT_FAILURES) or getattr(exc, "connection_invalidated", False):
            return said  # the server's or the connection's: no fault of the query
        if said.startswith("database error in "):
            said += f" (fix the query in {query}, or run it by hand to see why)"
        return f"{self.config_key(query)}: {said}"

    def stream(self, sql: str, params: Mapping[str, Any] | None = None, *,
               expanding: Sequence[str] = (), batch: int = 2000, query: str | None = None
               ) -> Iterator[Mapping[str, Any]]:
        """Rows as mappings, fetched ``batch`` at a time through a server-side cursor; ``query``:
        the statement's config key, for an error's line (:meth:`errors`)."""
        statement = _text(sql, expanding)
        closed = False
        try:
            with self.errors(query):
                with self.engine.connect() as connection:
                    result = connection.execution_options(stream_results=True, yield_per=batch).execute(
                        statement, dict(params or {}))
                    try:
                        yield from result.mappings()  # type: ignore[misc]  # RowMapping: a Mapping[str, Any]
                    except GeneratorExit:
                        closed = True
                        raise
                    finally:
                        result.close()
        except SourceError:
            if closed:  # the reader stopped (another error, or it had what it needed): a connection
                return  # that cannot be cleaned up is not news, and raised here it is a traceback
            raise

    def fetch(self, sql: str, params: Mapping[str, Any] | None = None, *,
              expanding: Sequence[str] = (), query: str | None = None) -> list[Mapping[str, Any]]:
        """All rows of a small result (lookups for one chunk of carts).

        A MySQL or MariaDB column in the 3-byte charset (``utf8mb3``, an old shop's ``utf8``)
        compared with a list holding a character beyond the BMP (``𝓫ob@…``, an emoji) is an
        error (1267, 1270, 1271), and one such address stopped the whole run. No such value can be
        stored in that column, so it can match nothing there: the lookup is asked again without
        those values (:func:`_within_bmp`), and everybody else's orders and unsubscriptions are
        still found. ``query``: the statement's config key, for an error's line (:meth:`errors`)."""
        values = dict(params or {})
        with self.errors(query):
            try:
                return self._fetch(sql, values, expanding)
            except _sqlalchemy().exc.DBAPIError as exc:
                narrowed = _within_bmp(values, expanding)
                if _error_code(exc) not in _COLLATION_MIX or narrowed == values:
                    raise
            return self._fetch(sql, narrowed, expanding)

    def _fetch(self, sql: str, params: dict[str, Any], expanding: Sequence[str]) -> list[Mapping[str, Any]]:
        with self.engine.connect() as connection:
            return list(connection.execute(_text(sql, expanding), params).mappings())  # type: ignore[arg-type]

    def table_names(self, *, views: bool = True) -> set[str]:
        """The tables of the database and, with ``views``, its views: the queries read a view
        as a table (a DBA's views of the columns cartrescue needs, a schema of views over a
        replica), where one taken for missing failed ``doctor`` and skipped the newsletter sends."""
        with self.errors():
            inspector = _sqlalchemy().inspect(self.engine)
            return set(inspector.get_table_names()) | (set(inspector.get_view_names()) if views else set())

    def columns(self, table: str) -> dict[str, Any] | None:
        """Lower-cased column name -> reflected SQLAlchemy type; None when the table is absent, or
        this account may not see it (MySQL and MariaDB refuse ``SHOW CREATE TABLE`` of a table
        it may not read): the reads that need it say why, or do without it."""
        sa = _sqlalchemy()
        with self.errors():
            try:
                reflected = sa.inspect(self.engine).get_columns(self.full_name(table))
            except sa.exc.NoSuchTableError:
                return None
            except sa.exc.DBAPIError as exc:
                if not refused(exc):
                    raise
                return None
        return {str(column["name"]).lower(): column["type"] for column in reflected}

    def refusal(self, table: str) -> str | None:
        """The server's words when this account may not SELECT from ``table`` (a role limited to
        some of the shop's tables), else None: one statement that reads no row, asked before a
        read that can do without the table, which then need not fail half-way. Any other failure
        (no such table) is None too: :meth:`DatabaseSource.missing_tables` and the reads say it."""
        sa = _sqlalchemy()
        try:
            self._fetch(f"SELECT 1 FROM {self.table(table)} WHERE 1 = 0", {}, ())
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            if refused(exc):
                orig = getattr(exc, "orig", None) or exc
                args: tuple[Any, ...] = tuple(getattr(orig, "args", None) or ())  # PyMySQL's (1142, "… denied …")
                return _driver_said(str(args[1] if len(args) > 1 and isinstance(args[0], int) else orig))
        return None

    def first_value(self, table: str, column: str) -> Any:
        """Some non-null value of ``table.column`` (one row, no ordering: cheap), or None."""
        quoted = self.engine.dialect.identifier_preparer.quote(column)
        rows = self.fetch(f"SELECT {quoted} AS v FROM {self.table(table)} WHERE {quoted} IS NOT NULL LIMIT 1")
        return rows[0]["v"] if rows else None

    def index_columns(self, table: str) -> list[list[str]]:
        """Column lists of the table's indexes (primary key included), for ``doctor``."""
        with self.errors():
            inspector = _sqlalchemy().inspect(self.engine)
            name = self.full_name(table)
            found = [list(index["column_names"]) for index in inspector.get_indexes(name)]
            primary = inspector.get_pk_constraint(name).get("constrained_columns") or []
            if primary:
                found.append(list(primary))
            return found

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


#: MySQL's and MariaDB's "Illegal mix of collations" (two operands, several): what a
#: ``utf8mb3`` column compared with a character beyond the BMP answers.
_COLLATION_MIX = frozenset({1267, 1270, 1271})


def _error_code(exc: BaseException) -> int | None:
    """The server's error number of a driver error (PyMySQL's and mysqlclient's first argument)."""
    args = getattr(getattr(exc, "orig", None), "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _within_bmp(params: Mapping[str, Any], expanding: Sequence[str]) -> dict[str, Any]:
    """``params`` with the texts beyond the BMP left out of the ``expanding`` lists: values a
    3-byte (``utf8mb3``) column can never hold (see :meth:`ShopDatabase.fetch`)."""
    return {name: [v for v in value if not (isinstance(v, str) and _beyond_bmp(v))]
            if name in expanding else value for name, value in params.items()}


def _beyond_bmp(text: str) -> bool:
    return any(ord(character) > 0xFFFF for character in text)


def _text(sql: str, expanding: Sequence[str]) -> Any:
    sa = _sqlalchemy()
    statement = sa.text(sql)
    if expanding:
        statement = statement.bindparams(*(sa.bindparam(name, expanding=True) for name in expanding))
    return statement


def refused(exc: BaseException) -> bool:
    """Is a driver error the server refusing this account a table (MySQL's and MariaDB's 1142 and
    1143 "command denied", PostgreSQL's "permission denied"), rather than a fault of the statement?"""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = tuple(getattr(orig, "args", None) or ())
    lower = str(orig).lower()
    return (bool(args) and args[0] in (1142, 1143)) or "permission denied" in lower or "command denied" in lower


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def as_utc(value: Any, tz: ZoneInfo | timezone, what: str, *, day_end: bool = False) -> datetime:
    """A database time as aware UTC. Naive values are read in ``tz`` (UTC for Magento, the
    shop's timezone for site-local columns); aware values are converted; whole numbers are
    seconds since 1970 (UTC), the one documented variant of a retyped time column. A date
    alone (a DATE column, ``2026-11-20``) is its midnight, or with ``day_end`` the end of that
    day (:func:`order_time`).

    Anything else (MariaDB's zero or invalid dates come back as text, PostgreSQL's
    ``infinity`` as text through :func:`_lenient_pg_times`) is a :class:`RowError`.
    """
    if value is None:
        raise RowError(f"{what}: missing")
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise RowError(f"{what}: not a time in seconds since 1970: {value!r}") from None
    if isinstance(value, (str, bytes)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        text = text.strip()
        try:
            value = date.fromisoformat(text) if len(text) <= 10 and ":" not in text else datetime.fromisoformat(text)
        except ValueError:
            raise RowError(f"{what}: not a time: {text[:40]!r}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time.max if day_end else time())
    if not isinstance(value, datetime):
        raise RowError(f"{what}: not a time: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise RowError(f"{what}: not a time: {value.isoformat()!r}") from None


def order_time(value: Any, tz: ZoneInfo | timezone, what: str) -> tuple[datetime, datetime | None]:
    """An order's time (:func:`as_utc`) and ``None``; but a date alone (a DATE column) is the
    end of that day, with its start (:attr:`Order.day_start`), as in the CSV format
    (:func:`cartrescue.sources.csv.parse_order_time` says why)."""
    moment = as_utc(value, tz, what, day_end=True)
    local = moment.astimezone(tz)
    if local.time() != time.max:  # a time, not a day's end that as_utc made of a date alone
        return moment, None
    return moment, datetime.combine(local.date(), time(), tz).astimezone(UTC)


def local_bound(moment: datetime, tz: ZoneInfo | timezone, *, slack: timedelta = timedelta(0)) -> datetime:
    """A window bound as a naive time in ``tz``, for comparing with naive columns.

    ``slack`` widens the window for site-local columns: around a DST change the local clock
    repeats or skips an hour, so the precise filter is applied after conversion. Bounds are
    kept within years 1000..9000, which every database's time type can compare with.
    """
    moment = min(max(moment, _EARLIEST), _LATEST)
    return (moment + slack).astimezone(tz).replace(tzinfo=None)


def as_decimal(value: Any, what: str, *, required: bool = True) -> Decimal | None:
    """A database number as a bounded :class:`Decimal` (see :func:`bounded_amount`)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"{what}: missing")
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, (int, bool)):
        number = Decimal(int(value))
    else:  # text: read as the CSV format reads it ("1,500" is 1.5 or 1500: refused, not guessed)
        number = parse_decimal(str(value).strip()[:80], what)
    return bounded_amount(number, what, value)


def as_refund(value: Any, what: str) -> Decimal:
    """What a column says was refunded of an order, as :func:`as_decimal` reads it; NULL (no
    refund yet, as Magento leaves it) is 0, a negative amount a :class:`RowError`."""
    return refund_amount(as_decimal(value, what, required=False), what)


def as_quantity(value: Any, what: str = "quantity") -> int:
    number = as_decimal(value, what)
    assert number is not None
    if number != number.to_integral_value():
        raise RowError(f"{what}: not a whole number: {value}")
    return bounded_quantity(int(number), what, value)


def as_stock(value: Any) -> int | None:
    """Stock on hand: ``None`` when the shop does not track it (empty, NULL, not a number, or
    a figure no stock could be)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < STOCK_LIMIT else None
    try:
        number = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        return None
    return int(number) if in_stock_range(number) else None


def as_cost(value: Any, what: str) -> Decimal | None:
    """A unit cost: ``None`` when absent or no usable amount (not a number, negative, out of
    bounds). Cost is optional knowledge, read by the high-margin rule only: one product's bad
    cost (``1,234.50`` in a meta field) cost every cart that held it its reminder; now such a
    line counts as of unknown margin, as an unreadable stock figure counts as untracked."""
    try:
        cost = as_decimal(value, what, required=False)
    except RowError:
        return None
    return cost if cost is None or cost >= 0 else None


def as_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal)):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return None


def as_flag(value: Any, what: str) -> bool | None:
    """A yes/no column of a ``sql`` source's own query (``marketing_consent``, ``sms_consent``,
    ``is_guest``), read as the CSV format reads its cell: a boolean, 0 or 1, a yes/no word; NULL
    or blank is unknown. A MySQL or MariaDB ``BIT(1)`` comes as a byte (:func:`bit_value`): read
    as text it was unknown, and under ``soft-opt-in`` a returning customer who had said no was
    reminded. Anything else (``unsubscribed``, a status code such as 3) is a :class:`RowError`,
    as in the CSV format: :func:`as_bool` read it as unknown, or a number as yes, and a customer
    who had opted out was mailed."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        bits = bit_value(raw)
        value = raw.decode("utf-8", "replace") if bits is None else bits
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float, Decimal)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return parse_bool(value, what)
    raise RowError(f"{what}: expected yes/no, got {value!r}")


def as_currency(value: Any) -> str:
    """An ISO 4217 code known to CLDR (see :func:`cartrescue.sources.values.parse_currency`)."""
    return parse_currency(value)


def email_in(backend: str, column: str, test: str = "{in}", *, emails: Iterable[str]) -> str:
    """The condition that ``column`` is one of the carts' addresses ``emails`` (lower-case,
    without blanks around, as :func:`stored_forms` gives them), ``test`` being the list's test
    (``IN :emails``, or :func:`any_in`'s ``{in}``).

    Every backend must find the same orders: elsewhere ``LOWER(TRIM(column))``, the capitals of
    the addresses' letters beyond ASCII lower-cased first (:func:`_capitals_folded`); MySQL's and
    MariaDB's collations ignore case and trailing blanks and keep the column's index, but not a
    leading blank (an order typed `` ann@example.com`` was found on PostgreSQL and not on
    MariaDB, and its buyer was reminded), so there the few values that begin with a blank are
    trimmed too: ``LIKE ' %'`` is a range of the same index.
    """
    if backend in ("mysql", "mariadb"):
        return f"({column} {test} OR ({column} LIKE ' %' AND TRIM({column}) {test}))"
    return f"LOWER({_capitals_folded(f'TRIM({column})', emails)}) {test}"


def _capitals_folded(expression: str, emails: Iterable[str]) -> str:
    """``expression`` with the capitals of the letters beyond ASCII that ``emails`` hold written
    small, one ``REPLACE`` each, as Python's ``str.lower`` (:func:`~cartrescue.contacts.fold_email`)
    writes them. ``LOWER()`` folds ASCII alone in SQLite, and in a PostgreSQL database whose
    ``LC_CTYPE`` is ``C`` (``initdb --no-locale``): there an order stored as ``ÅSA@…`` was not
    found for ``åsa@…`` and its buyer was reminded, and an unsubscription so stored was not
    seen. ``REPLACE`` depends on no locale. Only the addresses' own letters: a stored value
    with another letter beyond ASCII is none of them whatever its case (most chunks: none)."""
    for capital, small in _capitals(set("".join(emails))):
        expression = f"REPLACE({expression}, {_literal(capital)}, {_literal(small)})"
    return expression


def _capitals(letters: Iterable[str]) -> list[tuple[str, str]]:
    """``(capital, small)`` for each capital (and title-case form) of ``letters`` beyond ASCII
    that ``str.lower`` writes as that small letter, in a stable order."""
    pairs = []
    for small in sorted(letters):
        if small.isascii():
            continue
        for capital in dict.fromkeys((small.upper(), small.title())):
            if capital != small and len(capital) == 1 and capital.lower() == small:
                pairs.append((capital, small))
    return pairs


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (a letter here: the quote is doubled all the same)."""
    return "'" + text.replace("'", "''") + "'"


def stored_forms(emails: Iterable[str]) -> list[str]:
    """The values to look ``emails`` up by (:func:`email_in`): each address as the ledger keeps
    it (normal form C) and, when it has accents, decomposed too. A shop stores an address as its
    form sent it, and neither database compares the two forms equal: the order of a buyer who
    typed ``josé`` decomposed was not found, and the buyer was reminded of the cart."""
    forms: dict[str, None] = {}
    for email in emails:
        forms[email] = None
        if not email.isascii():
            forms[unicodedata.normalize("NFD", email)] = None
    return list(forms)


def cart_emails(carts: Iterable[Cart]) -> list[str]:
    """The carts' addresses to look their customers' orders up by, in both stored forms
    (:func:`stored_forms`)."""
    return stored_forms(sorted({cart.customer.email for cart in carts if cart.customer.email}))


def as_email(*candidates: Any) -> str | None:
    """The first valid address among ``candidates``, normalized; when none is valid but one is
    not blank, an error naming it. A fallback is one: Magento's ``quote.customer_email`` of
    ``n/a`` with the customer's address on the billing address dropped the cart."""
    invalid = None
    for candidate in candidates:
        email = normalize_email(candidate if isinstance(candidate, str) else None)
        if email:
            if is_valid_email(email):
                return email
            invalid = candidate if invalid is None else invalid
    if invalid is not None:
        raise RowError(f"email: not a valid address: {invalid!r}")
    return None


def order_email(value: Any) -> str | None:
    """An order's address, normalized, valid or not: it only ties the order to carts (an invalid
    one ties it to none, a cart's address being always valid) and is never written to. Read as a
    cart's is (:func:`as_email`), one mistyped at checkout made the whole order unreadable: the
    customer's other carts waited for it, and the report left it out, where Magento's and the CSV
    export's same order were read."""
    return normalize_email(value if isinstance(value, str) else None)


def as_locale(value: Any) -> str | None:
    return normalize_locale(value)


def zone(name: str, key: str) -> ZoneInfo:
    """An IANA timezone from configuration, or a :class:`ConfigError` naming the key."""
    try:
        return ZoneInfo(str(name))
    except (ValueError, KeyError, OSError):
        raise ConfigError(f"{key}: expected an IANA timezone name like Europe/Stockholm, got {name!r}") from None


def text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def codes_of(value: Any) -> tuple[str, ...]:
    """An order's discount code as :attr:`Order.discount_codes <cartrescue.model.Order.discount_codes>`:
    none for NULL or blank."""
    code = text_or_none(value)
    return () if code is None else (code,)


def id_or_none(value: Any) -> str | None:
    """Database ids as strings; ``0`` and blank mean "none" in these schemas."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "0") else text


def item(sku: Any, name: Any, quantity: Any, unit_price: Any, *, unit_cost: Any = None,
         stock: Any = None, image_url: str | None = None, product_url: str | None = None) -> LineItem:
    """A line item from database values, with the same rules as the CSV source."""
    sku_text, name_text = text_or_none(sku), text_or_none(name)
    if not sku_text and not name_text:
        raise RowError("line without sku and name")
    price = as_decimal(unit_price, "unit_price")
    assert price is not None
    if price < 0:
        raise RowError(f"unit_price: negative: {unit_price}")
    return LineItem(
        sku=sku_text or name_text or "",
        name=name_text or sku_text or "",
        quantity=as_quantity(quantity),
        unit_price=price,
        unit_cost=as_cost(unit_cost, "unit_cost"),
        stock_on_hand=as_stock(stock),
        image_url=image_url,
        product_url=product_url,
    )


def _one_owner(rows: Sequence[Mapping[str, Any]]) -> None:
    """RowError when the rows of one cart name two addresses, customers or currencies
    (:func:`~cartrescue.sources.values.owner_conflict`): two stores' carts under one id went in
    one message, to whichever customer the server's row order put first."""
    for name in OWNER_FIELDS:
        found = owner_conflict(name, ((None, row.get(name)) for row in rows))
        if found is not None:
            (first, _), (other, _) = found
            if name == "currency":  # compared in any case, named as codes are written
                first, other = first.upper(), other.upper()
            raise RowError(f"{name} {first!r} and {other!r} in one cart: two carts under one id?")


#: What a stored phone number holds between its digits, as customers type it (``070-123 45 67``,
#: ``(555) 010.0100``, ``+46/70``), left out before its last digits are compared.
_PHONE_MARKS = (" ", "-", "(", ")", ".", "/")
#: How many of a number's last digits a shop's database is asked for: a number is stored as typed,
#: in any form (``070-123 45 67``, ``+46 70 123 45 67``), which SQL cannot read as E.164; its last
#: seven digits are the same in every form, and an index of no column serves either way. The rows
#: found are read as E.164 (:meth:`DatabaseSource.order_phone`) and compared whole by the run.
PHONE_TAIL = 7


def cart_numbers(carts: Iterable[Cart], region: str | None) -> list[str]:
    """The numbers of the carts known by phone number alone (:func:`~cartrescue.decide.orders.phone_key`)."""
    from cartrescue.decide.orders import phone_key

    return [number for cart in carts if (number := phone_key(cart, region))]


def phone_tail(backend: str, column: str) -> str:
    """SQL: the last :data:`PHONE_TAIL` characters of ``column`` without the marks typed between
    digits, for ``{in}`` a list of E.164 numbers' last digits (:meth:`DatabaseSource.phone_tails`)."""
    expression = f"TRIM({column})"
    for mark in _PHONE_MARKS:
        expression = f"REPLACE({expression}, '{mark}', '')"
    if backend == "sqlite":
        return f"SUBSTR({expression}, -{PHONE_TAIL}) {{in}}"
    return f"RIGHT({expression}, {PHONE_TAIL}) {{in}}"


def any_in(conditions: Sequence[tuple[str, str, Sequence[Any]]]) -> tuple[str, dict[str, Any], list[str]]:
    """``a IN :x OR b IN :y`` over the non-empty lists only (``1 = 0`` when all are empty).

    Each condition is (SQL expression, parameter name, values); an expression with ``{in}``
    gets ``IN :name`` there instead of at its end. Returns the SQL, the parameters and the
    names to bind as expanding lists.
    """
    parts, params, names = [], {}, []
    for expression, name, values in conditions:
        if values:
            parts.append(expression.replace("{in}", f"IN :{name}") if "{in}" in expression
                         else f"{expression} IN :{name}")
            params[name] = list(values)
            names.append(name)
    return (" OR ".join(parts) or "1 = 0"), params, names


def order_wanted(wanted: OrderFilter, cart_id: Any, email: Any, customer_id: Any, phone: Any = None) -> bool:
    """``wanted`` on raw database values: ids as text, the address as the ledger keeps it
    (:func:`order_email`; lower-cased alone, one stored decomposed missed its message), the
    number as stored (typed in any form)."""
    return wanted(id_or_none(cart_id), order_email(email), id_or_none(customer_id),
                  phone if isinstance(phone, str) else None)


def first_number(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """The first column of the first row as a whole number (a ``COUNT(*)``), else ``None``."""
    value = next(iter(rows[0].values()), None) if rows else None
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def chunks(iterable: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for element in iterable:
        batch.append(element)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def grouped(rows: Iterable[Mapping[str, Any]], key: str) -> Iterator[list[Mapping[str, Any]]]:
    """Consecutive rows with the same ``key`` (the SQL orders by it)."""
    current: list[Mapping[str, Any]] = []
    current_key: Any = object()
    for row in rows:
        value = row[key]
        if current and value != current_key:
            yield current
            current = []
        current_key = value
        current.append(row)
    if current:
        yield current


# --------------------------------------------------------------------------------------------
# Base for database sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecommendedIndex:
    """An index ``doctor`` looks for: any index whose leading columns are one of ``leading``."""

    table: str
    leading: tuple[tuple[str, ...], ...]
    create: str  # the statement docs/databases.md recommends, with {table} for the prefixed name

    def statement(self, table: str, preparer: Any, prefix: str = "") -> str:
        """``create`` for ``table``, its `backticked` names and the table quoted as this database
        quotes them: written MySQL's way, it was advised as is on PostgreSQL too, which refuses
        backticks and folds an unquoted ``Shop_quote`` to a ``shop_quote`` that does not exist.
        On PostgreSQL, whose index names are the schema's (MySQL's are the table's), the name
        takes the table ``prefix``: a second prefix's tables in one database got the same name,
        and the advice failed with ``relation … already exists``."""
        columns = re.sub(r"`([^`]+)`", lambda found: preparer.quote_identifier(found.group(1)), self.create)
        if prefix and preparer.dialect.name == "postgresql":
            columns = re.sub(r"^CREATE INDEX (\w+)", lambda found: "CREATE INDEX "
                             + preparer.quote(f"{prefix}{found.group(1)}".lower()), columns)
        return columns.format(table=preparer.quote(table))


class DatabaseSource(CartSource):
    """Shared plumbing of the database sources: config, connection, column types, ``check()``, close."""

    name = "sql"
    default_prefix: ClassVar[str] = ""
    required_tables: ClassVar[tuple[str, ...]] = ()
    recommended_indexes: ClassVar[tuple[RecommendedIndex, ...]] = ()
    #: The tables of the discount codes orders used, where the preset keeps them apart
    #: (:meth:`with_codes`): optional, a report without them gives an upper bound.
    code_tables: ClassVar[tuple[str, ...]] = ()
    #: Columns whose type the preset relies on, {table: {column: kind}} (see
    #: :mod:`cartrescue.sources.schema`); checked once per run, before the first read.
    column_kinds: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    #: (table, column) of the time ranges the preset's queries filter on.
    window_columns: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: What to do when one of these tables is missing (a module the shop may have removed).
    table_hints: ClassVar[Mapping[str, str]] = {}
    chunk_size: ClassVar[int] = 500

    def __init__(self, url: str, *, prefix: str | None = None, shop_tz: ZoneInfo = ZoneInfo("UTC"),
                 options: Mapping[str, Any] | None = None, on_problem: ProblemSink = ignore_problem,
                 base_currency: str | None = None, region: str | None = None) -> None:
        """``region``: the shop's (``Config.phone_region``), which a phone number without ``+`` is
        read in: a cart's and an order's alike (:func:`cart_numbers`, :meth:`order_phone`)."""
        super().__init__(on_problem)
        self.region = region
        self._phones_read: dict[str, bool] = {}  # table -> readable (the orders' phone numbers), asked once
        self.options = dict(options or {})
        self.shop_tz = zone(self.options["timezone"], "source.options.timezone") if self.options.get("timezone") \
            else shop_tz
        self.tz_configured = bool(self.options.get("timezone"))
        self.db = ShopDatabase(url, source=self.name, prefix=self.default_prefix if prefix is None else prefix)
        self.db.table_hints = self.table_hints
        self.recovery_template: str | None = self.options.get("recovery_url")
        self.base_currency = base_currency.upper() if base_currency else None
        self._schema: Schema | None = None
        self._tables_present: dict[tuple[str, ...], bool] = {}  # optional tables (newsletter plugins), asked once
        self._sends_notes: list[str] = []
        self._report_notes: list[str] = []
        self._report_warnings: list[str] = []
        self._codes_read = False  # set by orders() where its orders tell the discount codes they used

    @classmethod
    def from_config(cls, cfg: Any, *, shop_tz: ZoneInfo, on_problem: ProblemSink,
                    base_currency: str | None = None, region: str | None = None) -> "DatabaseSource":
        return cls(cfg.url, prefix=cfg.prefix, shop_tz=shop_tz, options=getattr(cfg, "options", None) or {},
                   on_problem=on_problem, base_currency=base_currency, region=region)

    def schema(self) -> Schema:
        """The checked column types: the first call of a run inspects, a misfit stops the run (exit 3)."""
        if self._schema is None:
            schema, problems = inspect_schema(self.db, self.column_kinds, self.window_columns)
            raise_for(self.name, problems)
            self._schema = schema
        return self._schema

    def window_bounds(self, table: str, column: str, window: Window, tz: ZoneInfo | timezone,
                      slack: timedelta = timedelta(0)) -> dict[str, Any]:
        """``:start`` and ``:end`` for a range on ``table.column``: naive times in ``tz`` (widened
        by ``slack``), or whole seconds since 1970 when the column holds those."""
        if self.schema().epoch(table, column):
            return {"start": math.floor(window.start.timestamp()), "end": math.ceil(window.end.timestamp())}
        return {"start": local_bound(window.start, tz, slack=-slack), "end": local_bound(window.end, tz, slack=slack)}

    def base_amount(self, amount: Decimal | None, currency: str | None) -> Decimal | None:
        """``amount`` as a base amount (:attr:`Cart.base_total`) when ``currency`` is the shop's base
        currency (``shop.currency``, when configured): a platform's base may be another one."""
        if amount is None or (self.base_currency and (currency or "").upper() != self.base_currency):
            return None
        return amount

    def t(self, name: str) -> str:
        return self.db.table(name)

    def progress_total(self, window: Window) -> ProgressTotal | None:
        """The preset's count of the carts in ``window`` (:meth:`count_carts`): one query, asked
        only for a progress bar; if it fails, the bar goes without a total."""
        try:
            found = self.count_carts(window)
        except SourceError:
            return None
        return None if found is None else ProgressTotal(found, "carts")

    def count_carts(self, window: Window) -> int | None:
        """How many carts :meth:`carts` reads for ``window`` (an estimate will do); ``None`` if
        the source cannot count cheaply."""
        return None

    def problem(self, location: str, reason: str, *, cart_id: str | None = None) -> None:
        """Report a row at ``location``; ``cart_id``: the cart it is (:attr:`RowProblem.cart_id`)."""
        self.on_problem(RowProblem(location, reason, cart_id))

    def refund(self, value: Any, what: str, where: str, strict: bool) -> Decimal:
        """What an order row says was refunded of it (NULL: 0). ``strict`` (the report): one that
        cannot be read makes the row unreadable (raises RowError). A run reports it at ``where``
        and takes none, as before runs read refunds: the order may still hold back reminders,
        where an unreadable row would hold back every cart of its customer."""
        try:
            return as_refund(value, what)
        except RowError as exc:
            if strict:
                raise
            self.problem(where, str(exc))
            return Decimal("0")

    def recovery_url(self, cart_id: str, token: str = "") -> str | None:
        if not self.recovery_template:
            return None
        return self.recovery_template.replace("{cart_id}", cart_id).replace("{token}", token)

    def tables_required(self) -> tuple[str, ...]:
        return self.required_tables

    def column(self, name: str) -> str:
        """A quoted column name (WordPress's ``ID`` must be quoted on PostgreSQL)."""
        return self.db.engine.dialect.identifier_preparer.quote(name)

    def sends_notes(self) -> list[str]:
        return list(self._sends_notes)

    def orders_carry_codes(self) -> bool:
        return self._codes_read

    def code_refusal(self) -> str | None:
        """Why this account may not read :attr:`code_tables` (a role limited to some of the
        shop's tables), naming them and the GRANT, else None: ``report``'s warning when it falls
        back to its upper bound, and ``doctor``'s (:meth:`check`), which finds it first."""
        refusals = {self.db.full_name(table): why for table in self.code_tables if (why := self.db.refusal(table))}
        if not refusals:
            return None
        return (f"{self.name} source: this account may not SELECT from {', '.join(refusals)} in {self.db.where} "
                f"({next(iter(refusals.values()))}): the discount codes the orders used are not read (GRANT SELECT "
                "on them to the account to read them)")

    def with_codes(self, orders: Iterable[Order], sql: str) -> Iterator[Order]:
        """``orders`` with the discount codes they used, for a preset that keeps them in tables
        of their own (:attr:`code_tables`: WooCommerce's coupon order items, PrestaShop's cart rules): ``sql`` returns
        ``order_id`` and ``code`` for the order ids in ``:ids``, asked once a chunk of orders, so
        only the orders the report wants are looked up and none of a window is held in memory. A
        blank code (a rule the shop applied by itself) is none. Without the tables, or where this
        account may not read them (asked once, before the first chunk), the orders as they are and
        a note: :meth:`orders_carry_codes` stays False (the report's upper bound)."""
        warning = self.code_refusal()
        if warning is not None:
            self._report_notes.append(warning)
            self._report_warnings.append(warning)
            yield from orders
            return
        missing = self.missing_tables(self.code_tables)
        if missing:
            self._report_notes.append(
                f"{self.name} source: {', '.join(missing)} not found in {self.db.where}: the discount codes the "
                "orders used are not read")
            yield from orders
            return
        self._codes_read = True
        for chunk in chunks(orders, self.chunk_size):
            found: dict[str, list[str]] = {}
            for row in self.db.fetch(sql, {"ids": [int(order.id) for order in chunk]}, expanding=("ids",)):
                code = text_or_none(row["code"])
                if code is not None:
                    found.setdefault(str(row["order_id"]), []).append(code)
            for order in chunk:
                codes = found.get(order.id)
                yield replace(order, discount_codes=tuple(dict.fromkeys(codes))) if codes else order

    def report_notes(self) -> list[str]:
        return list(dict.fromkeys(self._report_notes))

    def report_warnings(self) -> list[str]:
        return list(dict.fromkeys(self._report_warnings))

    def _has_tables(self, tables: Sequence[str], what: str) -> bool:
        """Do ``tables`` (of a plugin or module that may be absent) exist? Asked once per run;
        when they do not, a note says so and the newsletter sends are skipped."""
        key = tuple(tables)
        if key not in self._tables_present:
            missing = self.missing_tables(tables)
            self._tables_present[key] = not missing
            if missing:
                self._sends_notes.append(
                    f"{self.name} source: {', '.join(missing)} not found in {self.db.where}: {what} is not read, "
                    "so reminders do not wait for its newsletter days (source.newsletters.file can add a CSV export)")
        return self._tables_present[key]

    def phone_tails(self, carts: Sequence[Cart], table: str) -> list[str]:
        """What the carts without an address are looked up by in ``table`` (:func:`phone_tail`):
        none where no cart lacks one, or where this account cannot read ``table`` (asked once:
        such a cart is then matched by its own cart id alone, as before)."""
        numbers = cart_numbers(carts, self.region)
        if not numbers:
            return []
        return sorted({number[-PHONE_TAIL:] for number in numbers}) if self.phone_readable(table) else []

    def phone_readable(self, table: str) -> bool:
        """Whether this account can read ``table``, where the orders' phone numbers are (asked once)."""
        if table not in self._phones_read:
            self._phones_read[table] = self.readable(table)
        return self._phones_read[table]

    def address_phone(self, wanted: bool, table: str, phone: str, order: str, key: str, address_id: str) -> str:
        """SQL: the number of the order ``o`` from its addresses in ``table`` (``phone`` its column,
        ``order`` the column naming the order by ``o.key``, ``address_id`` theirs): the billing
        address's, else the shipping one's (``address_type`` sorts them so in both presets);
        ``NULL`` where none is ``wanted`` (no cart known by its number alone: no address read) or
        where this account cannot read ``table``."""
        if not wanted or not self.phone_readable(table):
            return "NULL"
        return (f"(SELECT a.{phone} FROM {self.t(table)} a WHERE a.{order} = o.{key} AND a.{phone} IS NOT NULL "
                f"ORDER BY a.address_type, a.{address_id} LIMIT 1)")

    def order_phone(self, value: Any) -> str | None:
        """An order's stored phone number in E.164, read as a cart's is (None: none, or no valid number)."""
        return normalize_phone(value if isinstance(value, str) else None, self.region)

    def missing_tables(self, tables: Sequence[str]) -> list[str]:
        """The prefixed names of ``tables`` this database does not have."""
        key = self.db.name_key
        present = {key(name) for name in self.db.table_names()}
        return [self.db.full_name(name) for name in tables if key(self.db.full_name(name)) not in present]

    def known_ids(self, configured: list[int], table: str, column: str, key: str, what: str) -> list[int]:
        """``configured`` (``source.options.KEY``: the shops or store views a source reads) once
        each is found in ``table.column``: an id the database does not have (a typo, another
        install's) read no cart, every run, and ``doctor`` said ok. A SourceError (exit 3)
        naming the file, the key, the id and the ids there are."""
        known = sorted(int(row[column]) for row in self.db.fetch(f"SELECT {column} FROM {self.t(table)}"))
        missing = [value for value in configured if value not in known]
        if missing:
            raise SourceError(
                f"{self.name} source: {self.db.config_key('source.options.' + key)}: "
                f"no {what} {', '.join(map(str, missing))} in {self.db.prefix}{table} "
                f"(its {what}s: {', '.join(map(str, known)) or 'none'})")
        return configured

    def readable(self, table: str) -> bool:
        """Can this account read ``table``, one a preset reads where the shop has it (a trimmed
        copy may not, and an account granted the documented tables alone may not read it)?"""
        return not self.missing_tables((table,)) and self.db.refusal(table) is None

    def check(self) -> list[str]:
        """Problems ``doctor`` shows: missing tables, columns of a type the preset cannot read, a
        missing recommended index, coupon tables this account may not read (:meth:`code_refusal`:
        runs do without them, ``report`` falls back to an upper bound)."""
        try:
            key = self.db.name_key
            present = {key(name) for name in self.db.table_names()}
            tables = {key(name) for name in self.db.table_names(views=False)} if self.recommended_indexes else set()
            misfits = [] if self._schema is not None else \
                inspect_schema(self.db, self.column_kinds, self.window_columns)[1]  # a run checked them already
            problems = [f"{self.name} source: {problem}" for problem in misfits]
        except SourceError as exc:
            return [str(exc)]
        problems += [
            f"{self.name} source: table {self.db.full_name(table)} not found in {self.db.where}"
            + (f" ({self.db.table_hints[table]})" if table in self.db.table_hints else "")
            for table in self.tables_required() if key(self.db.full_name(table)) not in present
        ]
        for index in self.recommended_indexes:
            if key(self.db.full_name(index.table)) not in tables:
                continue  # absent (said above), or a view: its indexes are its tables', which it does not name
            try:
                existing = self.db.index_columns(index.table)
            except SourceError as exc:
                problems.append(str(exc))
                continue
            if not any(tuple(cols[: len(lead)]) == lead for cols in existing for lead in index.leading):
                problems.append(
                    f"{self.name} source: no index on {self.db.full_name(index.table)}"
                    f"({', '.join(index.leading[0])}); each run then scans the whole table. Create it with: "
                    + index.statement(self.db.full_name(index.table), self.db.engine.dialect.identifier_preparer,
                                      self.db.table_prefixes.get(index.table, self.db.prefix))
                )
        refusal = self.code_refusal()
        return problems + ([refusal] if refusal is not None else [])

    def close(self) -> None:
        self.db.close()


# --------------------------------------------------------------------------------------------
# The generic ``sql`` source
# --------------------------------------------------------------------------------------------

_BIND = r"(?<![:\w]):{name}\b"
_ORDER_LISTS = ("cart_ids", "emails", "customer_ids")
#: Each query cartrescue runs, and the parameters it gives it (docs/databases.md).
QUERY_PARAMETERS = {
    "carts": ("start", "end"),
    "count": ("start", "end"),
    "orders": _ORDER_LISTS,
    "orders_placed": ("start", "end"),
    "newsletters": ("emails", "start", "end"),
}
#: A bound parameter as SQLAlchemy's ``text()`` finds one (``::`` casts and ``10:30`` are none).
_ANY_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


def check_queries(queries: Mapping[str, str]) -> None:
    """Each query has a name cartrescue runs and uses only the parameters it gives: found when the
    config loads (exit 2, naming the key), not as a database error in the middle of a run."""
    for key, query in queries.items():
        given = QUERY_PARAMETERS.get(key)
        if given is None:
            raise ConfigError(f"source.queries.{key}: not a query cartrescue runs (it runs "
                              f"{', '.join(QUERY_PARAMETERS)}; docs/databases.md)")
        unknown = sorted({name for name in _ANY_BIND.findall(query) if name not in given})
        if unknown:
            raise ConfigError(f"source.queries.{key}: {', '.join(':' + name for name in unknown)} "
                              f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} this query "
                              f"gets; it gets {', '.join(':' + name for name in given)}")
_LINE_COLUMNS = ("sku", "name", "quantity", "unit_price")
#: The columns each query must return (docs/databases.md), as the CSV format requires them.
_REQUIRED_COLUMNS = {
    "carts": ("cart_id", "currency", "created_at", "quantity", "unit_price"),  # and sku or name
    "orders": ("order_id", "created_at"),
    "orders_placed": ("order_id", "created_at"),
    "newsletters": ("email", "sent_at"),
}
#: An order is matched to carts by one of these: a query with none of them matches nothing.
_ORDER_MATCH = ("email", "customer_id", "cart_id")


def checked_columns(key: str, rows: Iterable[Mapping[str, Any]], source: str,
                    on_no_email: Callable[[str], None] | None = None) -> Iterator[Mapping[str, Any]]:
    """The rows of ``queries.<key>``, after a look at the first row's columns.

    A column it must return and does not (``SELECT c.id`` for ``cart_id``) stops the run naming
    the query and the column: unnoticed, an orders query without ``order_id`` read no order at all
    and every buyer was reminded. Names are lower-cased (MySQL keeps an alias's case: ``AS
    Email``), only when one is not. A carts query without ``email`` is said once to
    ``on_no_email``: its carts reach no one by e-mail.
    """
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return
    names = list(first.keys())
    lowered = [str(name).lower() for name in names]
    missing = [column for column in _REQUIRED_COLUMNS.get(key, ()) if column not in lowered]
    if key in ("orders", "orders_placed") and not any(column in lowered for column in _ORDER_MATCH):
        missing.append(" or ".join(_ORDER_MATCH))
    if key == "carts" and "sku" not in lowered and "name" not in lowered:  # a line is named by either
        missing.append("sku or name")
    if missing:
        close = getattr(iterator, "close", None)
        if close is not None:  # the query's connection now, not whenever the traceback is dropped
            close()
        raise SourceError(f"{source} source: source.queries.{key} returns no {', '.join(missing)} column "
                          f"(it returns {', '.join(map(str, names))}): name each with AS, as docs/databases.md lists")
    if key == "carts" and "email" not in lowered and on_no_email is not None:
        on_no_email(f"source.queries.{key} returns no email column: its carts reach no one by e-mail")
    if lowered == names:
        yield first
        yield from iterator
        return
    yield dict(zip(lowered, first.values()))
    for row in iterator:
        yield dict(zip(lowered, row.values()))


class SqlSource(DatabaseSource):
    """Carts and orders from named queries over any SQLAlchemy database.

    ``queries.carts`` returns one row per line item, columns named like the CSV format
    (docs/csv-format.md), the rows of one cart consecutive (``ORDER BY cart_id``), and takes the
    window as ``:start`` and ``:end``. ``queries.orders`` (optional) returns one row per order
    with the CSV order columns and may use the lists ``:cart_ids``, ``:emails`` and
    ``:customer_ids`` (an empty list matches nothing). ``queries.newsletters`` (optional) returns
    the shop's newsletter sends (``email``, ``sent_at``, ``campaign``) and may use ``:emails``,
    ``:start`` and ``:end``. Naive times are read in ``options.db_timezone`` (default UTC; ``shop``
    means the shop's timezone), and ``:start``/``:end`` are passed in that timezone too.
    """

    name = "sql"
    repeat_advice = "source.queries.carts returns its rows apart: give it ORDER BY cart_id (docs/databases.md)"

    def __init__(self, url: str, *, queries: Mapping[str, str], prefix: str | None = None,
                 shop_tz: ZoneInfo = ZoneInfo("UTC"), options: Mapping[str, Any] | None = None,
                 on_problem: ProblemSink = ignore_problem, base_currency: str | None = None,
                 region: str | None = None) -> None:
        super().__init__(url, prefix=prefix, shop_tz=shop_tz, options=options, on_problem=on_problem,
                         base_currency=base_currency, region=region)
        if "carts" not in queries:
            raise ConfigError("source.queries.carts: a sql source needs a carts query")
        for key, query in queries.items():
            try:
                read_only_guard(query)
            except SourceError as exc:
                raise ConfigError(f"source.queries.{key}: {exc}") from None
        check_queries(queries)
        self.queries = dict(queries)
        name = str(self.options.get("db_timezone", "UTC"))
        self.db_tz: ZoneInfo | timezone = self.shop_tz if name == "shop" else zone(name, "source.options.db_timezone")
        self.name = str(self.options.get("name", "sql"))
        self.db.source = self.name
        self.db.own_queries = True
        self._apart: dict[str, Apart] = {}  # the cart ids the first pass met in more than one place

    @classmethod
    def from_config(cls, cfg: Any, *, shop_tz: ZoneInfo, on_problem: ProblemSink,
                    base_currency: str | None = None, region: str | None = None) -> "SqlSource":
        return cls(cfg.url, queries=cfg.queries or {}, prefix=cfg.prefix, shop_tz=shop_tz,
                   options=getattr(cfg, "options", None) or {}, on_problem=on_problem, base_currency=base_currency,
                   region=region)

    def _window_params(self, window: Window, slack: timedelta = timedelta(0)) -> dict[str, Any]:
        """``:start`` and ``:end`` as naive times in ``db_timezone``, widened by ``slack``."""
        return {"start": local_bound(window.start, self.db_tz, slack=-slack),
                "end": local_bound(window.end, self.db_tz, slack=slack)}

    def _groups(self, window: Window) -> Iterator[list[Mapping[str, Any]]]:
        sql = self.queries["carts"]
        params = {name: value for name, value in self._window_params(window).items()
                  if re.search(_BIND.format(name=name), sql)}
        return grouped(checked_columns("carts", self.db.stream(sql, params, query="source.queries.carts"), self.name,
                                       self._no_email), "cart_id")

    def _no_email(self, reason: str) -> None:
        self.problem("carts query", reason)

    def activity(self, window: Window) -> Iterator[Activity]:
        """The first pass (every cart's address and last activity), which also notes each group's
        cart id and what its rows hold: a query without ``ORDER BY cart_id`` may return a cart's
        rows apart, and the carts pass then skips such a cart whole instead of sending its first
        piece (:mod:`.apart`; a cart listed twice alike keeps its first appearance)."""
        apart = ApartIds()
        saved, self.on_problem = self.on_problem, ignore_problem  # the carts pass reports them
        complete = False
        try:
            for place, rows in enumerate(self._groups(window), 1):
                apart.add(str(rows[0]["cart_id"]), place, hash(repr([tuple(row.items()) for row in rows])))
                cart = self._cart(rows)
                activity = Activity.of_cart(cart) if cart is not None else None
                if activity is not None:
                    yield activity
            complete = True
        finally:
            self.on_problem = saved
            if complete:
                self._apart = apart.finish()
            else:
                apart.close()

    def carts(self, window: Window) -> Iterator[Cart]:
        apart, self._apart = self._apart, {}
        met: set[str] = set()  # of the ids met apart: those this pass has met (its window is the first's, or less)
        for rows in self._groups(window):
            cart_id = str(rows[0]["cart_id"])
            entry = apart.get(cart_id)
            if entry is not None:
                first = cart_id not in met
                met.add(cart_id)
                if not entry.alike:  # in pieces: none is the cart, said once
                    if first:
                        self.problem(f"carts query cart_id={cart_id}",
                                     f"its rows are not together (in {len(entry.lines)} places): skipped whole, "
                                     f"never half a cart ({self.repeat_advice})", cart_id=cart_id)
                    continue
                if not first:  # listed twice alike: the first appearance is the cart
                    self.problem(f"carts query cart_id={cart_id}",
                                 "the same cart id again (only its first appearance is used)")
                    continue
            cart = self._cart(rows)
            if cart is not None:
                yield cart

    def count_carts(self, window: Window) -> int | None:
        """``queries.count`` when configured: one number for the window (``:start``, ``:end``)."""
        sql = self.queries.get("count")
        if not sql:
            return None
        params = {name: value for name, value in self._window_params(window).items()
                  if re.search(_BIND.format(name=name), sql)}
        return first_number(self.db.fetch(sql, params, query="source.queries.count"))

    def _cart(self, rows: list[Mapping[str, Any]]) -> Cart | None:
        first = rows[0]
        cart_id = str(first["cart_id"])

        def level(column: str) -> Any:
            for row in rows:
                value = row.get(column)
                if value is not None and value != "":
                    return value
            return None

        try:
            if len(rows) > 1:
                _one_owner(rows)
            items = tuple(
                item(row.get("sku"), row.get("name"), row.get("quantity"), row.get("unit_price"),
                     unit_cost=row.get("unit_cost"), stock=as_stock(row.get("stock_on_hand")),
                     image_url=text_or_none(row.get("image_url")), product_url=text_or_none(row.get("product_url")))
                for row in rows if any(row.get(name) is not None for name in _LINE_COLUMNS)
            )  # a row without line columns (a LEFT JOIN of an empty cart) adds no line: empty_cart
            created = as_utc(level("created_at"), self.db_tz, "created_at")
            updated = as_utc(level("updated_at"), self.db_tz, "updated_at") if level("updated_at") is not None \
                else created
            total = as_decimal(level("total"), "total", required=False)
            customer_id = id_or_none(level("customer_id"))
            guest = as_flag(level("is_guest"), "is_guest")
            customer = Customer(
                email=as_email(level("email")),
                id=customer_id,
                phone=text_or_none(level("phone")),
                first_name=text_or_none(level("first_name")),
                last_name=text_or_none(level("last_name")),
                locale=as_locale(level("locale")),
                is_guest=(customer_id is None) if guest is None else guest,
                marketing_consent=as_flag(level("marketing_consent"), "marketing_consent"),
                sms_consent=as_flag(level("sms_consent"), "sms_consent"),
            )
            currency = as_currency(level("currency"))
            recovery_url = text_or_none(level("recovery_url"))
            store_id, device = text_or_none(level("store_id")), text_or_none(level("device"))
            refuse_unkeepable_owner(self.name, cart_id, customer)
            refuse_nul((("recovery_url", recovery_url), ("store_id", store_id), ("device", device)))
        except RowError as exc:
            self.problem(f"carts query cart_id={cart_id}", str(exc), cart_id=cart_id)
            return None
        return Cart(
            id=cart_id, source=self.name, customer=customer, currency=currency, items=items,
            total=total if total is not None else sum((i.line_total for i in items), Decimal("0")),
            created_at=created, updated_at=updated,
            recovery_url=recovery_url or self.recovery_url(cart_id), store_id=store_id, device=device,
        )

    def orders_for(self, carts: Sequence[Cart]) -> Iterator[Order]:
        sql = self.queries.get("orders")
        if not sql or not carts:
            return
        lists: dict[str, Sequence[str | None]] = {
            "cart_ids": sorted({cart.id for cart in carts}),
            "emails": cart_emails(carts),
            "customer_ids": sorted({cart.customer.id for cart in carts if cart.customer.id}),
        }
        used = [name for name in _ORDER_LISTS if re.search(_BIND.format(name=name), sql)]
        seen: set[str] = set()
        # An empty list binds as (NULL): matches nothing, whatever the column's type.
        params = {name: lists[name] or [None] for name in used}
        for row in checked_columns("orders", self.db.fetch(sql, params, expanding=used, query="source.queries.orders"),
                                   self.name):
            order_id = text_or_none(row.get("order_id"))
            if order_id is None or order_id in seen:
                continue
            seen.add(order_id)
            order = self._order(row, order_id, "orders", keep=True)
            if order is not None:
                yield order

    def sends_for(self, emails: Sequence[str], window: Window) -> Iterator[MarketingSend]:
        """``queries.newsletters``: rows with ``email``, ``sent_at`` (and ``campaign``) for the
        lower-cased ``:emails``, sent between ``:start`` and ``:end`` (naive, in ``db_timezone``)."""
        sql = self.queries.get("newsletters")
        if not sql or not emails:
            return
        params: dict[str, Any] = {"emails": stored_forms(emails), **self._window_params(window)}
        used = [name for name in params if re.search(_BIND.format(name=name), sql)]
        for row in checked_columns("newsletters", self.db.fetch(sql, {name: params[name] for name in used},
                                   expanding=[name for name in used if name == "emails"],
                                   query="source.queries.newsletters"), self.name):
            try:
                email = as_email(row.get("email"))
                sent = as_utc(row.get("sent_at"), self.db_tz, "sent_at")
            except RowError as exc:
                self.problem(f"newsletters query email={text_or_none(row.get('email'))}", str(exc))
                continue
            if email:
                yield MarketingSend(email, sent, campaign_name(row.get("campaign")))

    def _order(self, row: Mapping[str, Any], order_id: str, query: str, keep: bool = False,
               refunds: bool = False) -> Order | None:
        """A row of the ``orders`` (or ``orders_placed``) query; ``None`` for an ignored status, a
        cancelled order (``cancelled_at`` set, whatever its status says), a negative total or an unreadable row
        (reported; with ``keep``, the orders of carts, kept as unreadable). Its columns read as the
        CSV format's: ``delivered`` may be a fulfillment status (``unfulfilled``). Its optional
        ``refunded`` is read (NULL or absent: 0): a run's order refunded in full awaits no
        delivery (:attr:`Order.awaits_delivery`); with ``refunds`` (the report's rows) it is no
        order at all, as one whose status says refunded is; a run's still bought its cart (README,
        ``ordered``), as the presets read it."""
        if text_or_none(row.get("cancelled_at")) is not None:
            return None
        ignored = IGNORED_ORDER_STATUSES if refunds else RUN_IGNORED_ORDER_STATUSES
        try:
            created, day_start = order_time(row.get("created_at"), self.db_tz, "created_at")
            total = as_decimal(row.get("total"), "total", required=False) or Decimal("0")
            refunded = self.refund(row.get("refunded"), "refunded", f"{query} query order_id={order_id}", refunds)
            if refunds and refunded_whole(total, refunded):
                return None
            order = Order(
                id=order_id,
                created_at=created,
                day_start=day_start,
                email=order_email(row.get("email")),
                customer_id=id_or_none(row.get("customer_id")),
                cart_id=id_or_none(row.get("cart_id")),
                total=total,
                currency=text_or_none(row.get("currency")),
                status=order_status(text_or_none(row.get("status")) or ""),
                delivered=parse_delivered(row.get("delivered")),
                discount_codes=codes_of(row.get("discount_code")),
                refunded=refunded,
                phone=self.order_phone(row.get("phone")),
            )
        except RowError as exc:
            where = f"{query} query order_id={order_id}"
            self.problem(where, str(exc))
            if not keep or order_status(text_or_none(row.get("status")) or "") in ignored:
                return None
            return Order.unreadable_row(order_id, where, row.get("email"), row.get("customer_id"), row.get("cart_id"))
        # A negative total: a refund or credit note returned as an order row, no purchase.
        return None if order.status in ignored or order.total < 0 else order

    def check(self) -> list[str]:
        try:
            with self.db.errors():
                with self.db.engine.connect() as connection:
                    connection.exec_driver_sql("SELECT 1")
        except SourceError as exc:
            return [str(exc)]
        return []


    # -- orders by time (report) -------------------------------------------------------------

    def orders(self, window: Window, wanted: OrderFilter | None = None) -> Iterator[Order]:
        """The orders placed in ``window`` from ``queries.orders_placed`` (``:start``/``:end`` in
        ``db_timezone``; the columns of ``queries.orders`` plus an optional ``discount_code`` and
        ``refunded``, what was refunded of the order: revenue is its total less that). With a
        ``discount_code`` column an order whose code is NULL used none (:meth:`orders_carry_codes`)."""
        sql = self.queries.get("orders_placed")
        if not sql:
            raise ConfigError("source.queries.orders_placed: `report` needs a query listing the orders placed "
                              "between :start and :end (see docs/databases.md)")
        previous = None
        # Naive local times repeat an hour when the clocks go back: an order of the first 02:40 was
        # after a window ending at the second 02:20. Widened by that hour, the rows are filtered
        # by their real time below (window.overlaps), as the CSV export of the same orders is.
        params = self._window_params(window, timedelta(hours=1))
        looked = False
        for row in checked_columns("orders_placed", self.db.stream(sql, params, query="source.queries.orders_placed"),
                                   self.name):
            if not looked:  # the query's columns, as its first row has them
                self._codes_read, looked = "discount_code" in row, True
            order_id = text_or_none(row.get("order_id"))
            if order_id is None or order_id == previous:  # rows of one order (a join): the first wins
                continue
            previous = order_id
            if wanted is not None and not order_wanted(wanted, row.get("cart_id"), row.get("email"), row.get("customer_id"),
                                                       row.get("phone")):
                continue
            order = self._order(row, order_id, "orders_placed", refunds=True)
            if order is not None and window.overlaps(order.earliest, order.created_at):
                yield order
