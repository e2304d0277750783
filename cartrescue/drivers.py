"""Database drivers: what to install when a URL needs one that is missing, and how long a
connection (and a statement of a ledger or a shop's database) waits for its server.

Owns one answer, for the ledger and a shop's database alike: ``pip install cartrescue`` brings
SQLite only; PostgreSQL and MySQL/MariaDB need the ``[postgres]`` or ``[mysql]`` extra. Without
it the driver's import fails inside SQLAlchemy, and "No module named 'psycopg'" left a shop owner
to guess which package, and under which name, to install.
"""

from __future__ import annotations

import math
import time
from typing import Any

#: The module SQLAlchemy imports for a driver -> what brings it (pip extras of cartrescue).
_EXTRAS = {
    "psycopg": "pip install 'cartrescue[postgres]' (psycopg 3)",
    "psycopg2": "write postgresql+psycopg:// and pip install 'cartrescue[postgres]' (psycopg 3)",
    "pymysql": "pip install 'cartrescue[mysql]' (PyMySQL)",
    "MySQLdb": "write mysql+pymysql:// and pip install 'cartrescue[mysql]' (PyMySQL)",
}


def missing_driver(exc: BaseException, where: str) -> str | None:
    """One line naming the driver ``where`` needs and how to install it, when ``exc`` (or the
    driver error SQLAlchemy wrapped) is its failed import; None for any other error."""
    orig = getattr(exc, "orig", None) or exc
    if not isinstance(orig, ModuleNotFoundError):
        return None
    module = (orig.name or "").partition(".")[0]
    if module == "MySQLdb":  # a bare mysql:// URL asks SQLAlchemy for mysqlclient
        return (f"the URL of {where} names no driver, and SQLAlchemy's default (mysqlclient) is not "
                f"installed: {_EXTRAS[module]}")
    how = _EXTRAS.get(module, f"pip install {module}")
    return f"the database driver {module} for {where} is not installed: {how}"


#: Seconds a ledger or a shop's database may take to connect and greet. A server (or a proxy
#: whose backend is gone) that takes the connection and never answers held every command for
#: good, ``doctor`` too, and each cron round added another hung process.
CONNECT_WAIT = 10


def connect_deadline(url: Any, limit: float | None = None) -> dict[str, Any]:
    """``connect_args`` that bound the setup of a connection to ``url`` (a SQLAlchemy URL) by
    :data:`CONNECT_WAIT`, or ``limit`` (``doctor --timeout``) where shorter; a value the URL gives
    itself wins. PostgreSQL's ``connect_timeout`` covers the whole setup, in whole seconds, 2 at
    least (libpq's). PyMySQL's covers only the TCP connect: the server's greeting is read
    under ``read_timeout``, which :func:`statement_deadline` makes the statements' (a ledger's,
    ``ledger.statement_wait``; a shop's database's, ``source.statement_wait``)."""
    backend, given = url.get_backend_name(), url.query
    wait, _why = connect_wait(url, limit)
    args: dict[str, Any] = {}
    if backend in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in given:
        args["connect_timeout"] = wait
    if backend in ("mysql", "mariadb") and "read_timeout" not in given:
        args["read_timeout"] = wait
    return args


def connect_wait(url: Any, limit: float | None) -> tuple[float, str | None]:
    """The seconds :func:`connect_deadline` lets connecting to ``url`` take, as its driver counts
    them, and what a line about a connection that ran out of them names as the one to raise:
    ``doctor --timeout`` where ``limit`` made them shorter than :data:`CONNECT_WAIT` (and the URL
    set no wait of its own), else None: the drivers' own bound, which no option raises. A line
    that said only "connection timed out" sent the owner of an agency's loop of ``doctor
    --timeout 5s`` to look for a database that was down, where 5 s were too few for a far one."""
    backend = url.get_backend_name()
    wait = CONNECT_WAIT if limit is None else min(CONNECT_WAIT, limit)
    if backend == "postgresql":
        wait = max(2, math.ceil(wait))
    known = backend in ("postgresql", "mysql", "mariadb")
    if limit is None or limit >= CONNECT_WAIT or own_connect_wait(url) or not known:
        return wait, None
    return wait, DOCTOR_LIMIT if wait == limit else f"{DOCTOR_LIMIT}; PostgreSQL waits whole seconds, 2 at least"


def own_connect_wait(url: Any) -> bool:
    """Does ``url`` set its own wait to connect (``connect_timeout``; MySQL/MariaDB's greeting
    waits ``read_timeout``), which :func:`connect_deadline` leaves as it is?"""
    given = url.query
    return "connect_timeout" in given or (url.get_backend_name() in ("mysql", "mariadb") and "read_timeout" in given)


def timed_out(exc: BaseException) -> bool:
    """Is ``exc`` (a driver's error, or SQLAlchemy's around it) a wait for the server that ran
    out: psycopg's "connection timeout expired", PyMySQL's "(timed out)"?"""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "timed out" in text or "timeout expired" in text


def lift_read_deadline(engine: Any, url: Any) -> None:
    """Once a MySQL/MariaDB connection whose statements keep no deadline (:func:`statement_deadline`
    with None) has greeted, its reads wait as long as the server takes again: the ``read_timeout``
    of :func:`connect_deadline` was for the greeting only. Relies on PyMySQL's ``_read_timeout``,
    which it applies before each read (``tests/test_connect_deadline.py`` fails if that changes)."""
    if url.get_backend_name() not in ("mysql", "mariadb") or "read_timeout" in url.query:
        return
    from sqlalchemy import event

    def _greeted(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection._read_timeout = None

    event.listen(engine, "connect", _greeted, insert=True)


#: Seconds a ledger statement may go without an answer (``ledger.statement_wait``). Once
#: connected, a server that stopped answering -- a proxy (pgbouncer, HAProxy, a cloud SQL proxy)
#: whose backend went away while it kept the client's TCP connection open and acknowledged --
#: held the run for good: no keepalive fires through a proxy that answers. Its heartbeat hung
#: too, the lock went stale, and each cron round added another process hung on the same proxy.
#: The longest wait a run means to make is MariaDB's named lock (``ledger.LOCKING_WAIT``, 30 s)
#: or InnoDB's row lock (50 s by default); PostgreSQL's ``lock_timeout`` is 15 s.
STATEMENT_WAIT = 60.0

#: Seconds a statement on a shop's database may go without an answer (``source.statement_wait``):
#: one that stopped answering held ``run`` (and its lock: every later cron round exited 4),
#: ``carts``, ``preview``, ``doctor`` and ``report`` for good, as a ledger did. Its reads are
#: longer than a ledger's: a run's first query of carts is answered once the server has found and
#: sorted them, which on a ``quote`` table of a million rows without the index docs/databases.md
#: recommends is a full scan from disk (1-2 GB: a minute or two on a slow disk). Streamed rows do
#: not count: the time runs only while the reader waits for the server.
SOURCE_STATEMENT_WAIT = 600.0


#: The option that bounds each wait of ``doctor`` for a server (``within``), as its lines name it.
DOCTOR_LIMIT = "doctor --timeout"


def within(seconds: float, key: str, limit: float | None) -> tuple[float, str]:
    """The shorter of a server's own bound (``seconds``, set by ``key``: ``smtp.timeout``,
    ``source.statement_wait``) and ``doctor --timeout`` (``limit``; None: none), with what a
    line about a wait that ran out names as the one to raise. One slow server must not hold an
    agency's hourly loop of ``doctor`` over its shops for the bound a run may afford (10 minutes
    of ``source.statement_wait`` for a big table's first read; 30 of a slow relay)."""
    if limit is None or seconds <= limit:
        return seconds, key
    return limit, f"{DOCTOR_LIMIT}; {key} allows {seconds:g} s"


class Silence:
    """A ledger's (or a shop database's) deadline per statement, and whether its server stopped
    answering.

    Shared by the connections of one engine: once a statement of any of them went unanswered
    for ``seconds``, the server is taken for gone for as long again, and every statement or new
    connection meanwhile fails at once with the same line. The run's stop path (its outcomes,
    ``finish_run``, the lock's release) then ends in moments instead of a deadline per write; a
    process that lives on (the unsubscribe server of :mod:`cartrescue.webhook`) tries again
    after that, and goes on once the server answers."""

    def __init__(self, seconds: float | None, names: str, key: str = "ledger.statement_wait") -> None:
        self.seconds = seconds
        self.names = names  # the config key and the URL without its password
        self.key = key  # the config key of ``seconds``
        self._since: float | None = None  # when a statement last went unanswered (monotonic)

    @property
    def gone(self) -> bool:
        """Did a statement go unanswered less than ``seconds`` ago?"""
        since = self._since
        if since is None:
            return False
        if time.monotonic() - since < (self.seconds or 0):
            return True
        self._since = None
        return False

    def went(self) -> None:
        """A statement went unanswered for ``seconds``."""
        self._since = time.monotonic()

    def line(self) -> str:
        return f"{self.names} stopped answering for {self.seconds:g} s ({self.key})"

    def error(self, kind: type[BaseException], *args: Any, line: str | None = None) -> BaseException:
        """The driver's error ``kind(*args, line)`` (an OperationalError: SQLAlchemy takes it for a
        lost connection), marked for :func:`stopped_answering`; ``line`` by default :meth:`line`."""
        said = self.line() if line is None else line
        error = kind(*args, said)
        error.cartrescue_silence = said  # type: ignore[attr-defined]
        return error


def stopped_answering(exc: BaseException) -> str | None:
    """The line of :class:`Silence` when ``exc`` (or the driver error SQLAlchemy wrapped) is a
    statement that went unanswered past its deadline; None for any other error."""
    orig = getattr(exc, "orig", None) or exc
    said: str | None = getattr(orig, "cartrescue_silence", None)
    return said


def statement_deadline(engine: Any, url: Any, seconds: float | None, names: str,
                       key: str = "ledger.statement_wait", connect_limit: float | None = None) -> Silence:
    """Bound each statement of ``engine`` (a ledger's or a shop database's, to ``url``) by
    ``seconds`` without an answer (None: unbounded), for psycopg 3 and PyMySQL: their connections
    are made of the classes of :func:`_deadline_classes`. Any other driver (SQLite waits on its own
    ``busy_timeout``) is left as it is. A MySQL/MariaDB URL's own ``read_timeout`` and
    ``write_timeout`` win over ``seconds``. ``names`` (the config key of the URL, and the URL
    without its password) and ``key`` (the config key of ``seconds``) make :meth:`Silence.line`.
    A connection that ran out of its wait to connect (:func:`connect_wait`: the drivers' own, or
    the shorter one ``connect_limit``, ``doctor --timeout``, gave it) fails with a line of the
    same kind, naming that option where it was the one."""
    from sqlalchemy import event

    silence = Silence(seconds, names, key)
    driver = engine.dialect.driver
    if driver not in ("psycopg", "pymysql") or seconds is None:
        if seconds is None:  # unbounded: a MySQL/MariaDB greeting's deadline is lifted again
            lift_read_deadline(engine, url)
        return silence
    made = _deadline_classes().get(driver)
    if made is None:  # a psycopg older than 3.3 (psycopg_waits_with_timeout)
        return silence
    given = url.query
    dbapi = engine.dialect.loaded_dbapi
    refusal = (2013,) if driver == "pymysql" else ()  # CR_SERVER_LOST: SQLAlchemy's "disconnected"
    wait, why = connect_wait(url, connect_limit)
    own = own_connect_wait(url)

    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        if silence.gone:  # connecting again through the same proxy would wait CONNECT_WAIT each time
            raise silence.error(dbapi.OperationalError, *refusal)
        try:
            connection = made(*cargs, **cparams) if driver == "pymysql" else made.connect(*cargs, **cparams)
        except dbapi.OperationalError as exc:
            if own or not timed_out(exc):  # the URL's own wait: the driver's words name no number of ours
                raise
            # The drivers' own wait (why: None) is said the same way, naming no option: the
            # driver's "connection timeout expired" read as a database that was down.
            raise silence.error(dbapi.OperationalError, *refusal, line=f"{names} did not answer within {wait:g} s"
                                + (f" ({why})" if why else "")) from None
        connection._silence = silence
        if driver == "pymysql":  # the greeting's deadline (connect_deadline) gives way to the statements'
            if "read_timeout" not in given:
                connection._read_timeout = seconds
            if "write_timeout" not in given:
                connection._write_timeout = seconds
        return connection

    event.listen(engine, "do_connect", _connect)
    return silence


_CLASSES: dict[str, Any] = {}


def _deadline_classes() -> dict[str, Any]:
    """The connection classes of :func:`statement_deadline`, by driver (made once, of the
    drivers that are installed). Each raises :meth:`Silence.error` for a statement unanswered
    past the deadline, and for every statement after one was, closing its connection."""
    if _CLASSES:
        return _CLASSES
    try:
        import psycopg
        from psycopg import errors as pg_errors
    except ImportError:
        pass
    else:
        if psycopg_waits_with_timeout():
            _CLASSES["psycopg"] = _postgres_deadline(psycopg, pg_errors)
    try:
        import pymysql
        from pymysql.connections import Connection, MysqlPacket
    except ImportError:
        pass
    else:
        class MysqlDeadline(Connection):  # type: ignore[misc]
            """PyMySQL reads and writes under ``_read_timeout`` and ``_write_timeout`` (set to the
            deadline once connected); a time-out there becomes :meth:`Silence.error`."""

            _silence: Silence | None = None

            def _execute_command(self, command: Any, sql: Any) -> Any:
                silence = self._silence
                if silence is not None and silence.gone:
                    raise self._cut(silence)
                return super()._execute_command(command, sql)

            def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
                silence = self._silence
                if silence is not None and silence._since is not None and silence.gone:
                    raise self._cut(silence)  # the rest of a streamed result (a shop's carts), read as it closes
                try:
                    return super()._read_packet(packet_type)
                except pymysql.err.OperationalError as exc:
                    self._timed_out(exc)
                    raise

            def _write_bytes(self, data: bytes) -> None:
                try:
                    super()._write_bytes(data)
                except pymysql.err.OperationalError as exc:
                    self._timed_out(exc)
                    raise

            def _timed_out(self, exc: BaseException) -> None:
                """Raise :meth:`Silence.error` when ``exc`` was the socket's time-out."""
                silence = self._silence
                if silence is not None and isinstance(exc.__context__, TimeoutError):
                    silence.went()
                    raise self._cut(silence) from None

            def _cut(self, silence: Silence) -> BaseException:
                """:meth:`Silence.error`, the connection closed and its unbuffered result (a
                streamed read) left unread: closing that result, or collecting it, then reads
                nothing more, where it waited again or printed "Exception ignored" on stderr."""
                self._force_close()
                result = getattr(self, "_result", None)
                if result is not None:
                    result.unbuffered_active = False
                return silence.error(pymysql.err.OperationalError, 2013)

        _CLASSES["pymysql"] = MysqlDeadline
    return _CLASSES


def psycopg_waits_with_timeout() -> bool:
    """Does the installed psycopg take a timeout in ``Connection.wait`` and raise its private
    ``_WaitTimeout`` there (psycopg 3.3 and later; the ``[postgres]`` extra asks for it)? With an
    older one a PostgreSQL ledger's statements keep no deadline, as before it had one, rather than
    fail (``tests/test_ledger_silence.py`` fails loudly when a release changes this)."""
    import inspect

    import psycopg
    from psycopg import errors as pg_errors

    try:
        takes = "timeout" in inspect.signature(psycopg.Connection.wait).parameters
    except (TypeError, ValueError):
        return False
    return takes and isinstance(getattr(pg_errors, "_WaitTimeout", None), type)


def _postgres_deadline(psycopg: Any, pg_errors: Any) -> Any:
    """The psycopg connection class of :func:`statement_deadline`."""
    interval = getattr(psycopg.connection, "_WAIT_INTERVAL", 0.1)

    class PostgresDeadline(psycopg.Connection):  # type: ignore[type-arg]
        """psycopg has no read timeout; its wait for the server takes one, which bounds
        each step of a statement (send, then each read of its results)."""

        _silence: Silence | None = None

        def wait(self, gen: Any, interval: float = interval, timeout: float | None = None) -> Any:
            silence = self._silence
            if silence is None or timeout is not None:  # connecting, or psycopg's own cancel
                return super().wait(gen, interval, timeout)
            if silence.gone:
                self.pgconn.finish()
                raise silence.error(psycopg.OperationalError)
            try:
                return super().wait(gen, interval, silence.seconds)
            except pg_errors._WaitTimeout:  # the protocol is cut mid-way: the connection is done for
                silence.went()
                self.pgconn.finish()
                raise silence.error(psycopg.OperationalError) from None

    return PostgresDeadline
