"""Database drivers: what to install when a URL needs one that is missing.

Owns one answer, for the ledger and a shop's database alike: ``pip install cartrescue`` brings
SQLite only; PostgreSQL and MySQL/MariaDB need the ``[postgres]`` or ``[mysql]`` extra. Without
it the driver's import fails inside SQLAlchemy, and "No module named 'psycopg'" left a shop owner
to guess which package, and under which name, to install.
"""

from __future__ import annotations

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
