"""Database drivers: what to install when a URL needs one that is missing.

Owns one answer, for the ledger and a shop's database alike: ``pip install cartrescue`` brings
SQLite only; PostgreSQL and MySQL/MariaDB need the ``[postgres]`` or ``[mysql]`` extra. Without
it the driver's import fails inside SQLAlchemy, and "No module named 'psycopg'" left a shop owner
to guess which package, and under which name, to install.
"""

from __future__ import annotations

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


def connect_deadline(url: Any) -> dict[str, Any]:
    """``connect_args`` that bound the setup of a connection to ``url`` (a SQLAlchemy URL) by
    :data:`CONNECT_WAIT`; a value the URL gives itself wins. PostgreSQL's ``connect_timeout``
    covers the whole setup. PyMySQL's covers only the TCP connect: the server's greeting is read
    under ``read_timeout``, which :func:`lift_read_deadline` lifts again once connected."""
    backend, given = url.get_backend_name(), url.query
    args: dict[str, Any] = {}
    if backend in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in given:
        args["connect_timeout"] = CONNECT_WAIT
    if backend in ("mysql", "mariadb") and "read_timeout" not in given:
        args["read_timeout"] = CONNECT_WAIT
    return args


def lift_read_deadline(engine: Any, url: Any) -> None:
    """Once a MySQL/MariaDB connection has greeted, its reads wait as long as the server takes
    again (a report's long query, a lock wait the server bounds itself): the ``read_timeout`` of
    :func:`connect_deadline` was for the greeting only. Relies on PyMySQL's ``_read_timeout``,
    which it applies before each read (``tests/test_connect_deadline.py`` fails if that changes)."""
    if url.get_backend_name() not in ("mysql", "mariadb") or "read_timeout" in url.query:
        return
    from sqlalchemy import event

    def _greeted(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection._read_timeout = None

    event.listen(engine, "connect", _greeted, insert=True)
