"""Test helper: throw-away shop databases on the machine's PostgreSQL and MariaDB servers.

A plain module (not a conftest): test files import it and build their module-scoped fixtures
with :func:`shop_database`. Each database gets a unique name and is dropped afterwards. Without
a reachable server the tests skip with the reason; with ``CARTRESCUE_REQUIRE_SERVICES=1``
(as ``.ci/run`` sets) they fail instead, so CI cannot go green by skipping.

Server URLs can be overridden with ``CARTRESCUE_TEST_MARIADB_URL`` and
``CARTRESCUE_TEST_POSTGRES_URL`` (admin accounts: they create databases and users).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

FIXTURES = Path(__file__).parent / "fixtures" / "shops"

SERVERS = {
    "mariadb": os.environ.get("CARTRESCUE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306"),
    "postgres": os.environ.get("CARTRESCUE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"),
}
START_HINT = {
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
}

#: Parameters for tests that run on both servers, each with its marker.
KINDS = [pytest.param("mariadb", marks=pytest.mark.mariadb, id="mariadb"),
         pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")]


def services_required() -> bool:
    return os.environ.get("CARTRESCUE_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


@lru_cache(maxsize=None)
def unreachable(kind: str) -> str | None:
    """``None`` when the server answers, else the reason it does not."""
    admin = _admin_url(kind, None)
    args = {"connect_timeout": 3}
    try:
        engine = sa.create_engine(admin, connect_args=args, poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:  # any failure means "no server for these tests"
        first = " ".join(str(getattr(exc, "orig", exc)).split())[:160]
        return f"{kind} server at {sa.engine.make_url(admin).render_as_string(hide_password=True)} " \
               f"not reachable ({first}); start it with: {START_HINT[kind]}"
    return None


def need(kind: str) -> None:
    """Skip (or, when services are required, fail) unless the ``kind`` server answers."""
    reason = unreachable(kind)
    if reason is None:
        return
    if services_required():
        pytest.fail(f"CARTRESCUE_REQUIRE_SERVICES is set but the {reason}", pytrace=False)
    pytest.skip(reason)


def _admin_url(kind: str, database: str | None) -> sa.engine.URL:
    url = sa.engine.make_url(SERVERS[kind])
    if kind == "postgres":
        return url.set(database=database or "postgres")
    return url.set(database=database)


@dataclass
class ShopDb:
    """A throw-away database: its URL for the adapter and an admin engine for the test."""

    kind: str
    name: str
    url: str
    admin: sa.engine.Engine
    users: list[str] = field(default_factory=list)

    def run_file(self, path: Path | str, *, prefix: str = "") -> None:
        """Run a DDL file (statements end with ``;`` at the end of a line)."""
        text = Path(path).read_text().replace("{prefix}", prefix)
        text = re.sub(r"^\s*--.*$", "", text, flags=re.MULTILINE)
        statements = [part.strip() for part in re.split(r";\s*$", text, flags=re.MULTILINE) if part.strip()]
        with self.admin.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    def schema(self, preset: str, *, prefix: str = "") -> None:
        self.run_file(FIXTURES / f"{preset}.{self.kind}.sql", prefix=prefix)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows with bound parameters. Columns a row leaves out get their defaults."""
        groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        with self.admin.begin() as connection:
            for columns, batch in groups.items():
                target = sa.table(table, *(sa.column(name) for name in columns))
                connection.execute(target.insert(), [dict(row) for row in batch])

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        with self.admin.begin() as connection:
            result = connection.execute(sa.text(sql), dict(params or {}))
            return list(result) if result.returns_rows else []

    def execute_unchecked(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """A statement run with MariaDB's date checks off, as old imports leave a shop's data:
        zero dates (``0000-00-00``) and invalid ones (``2026-02-31``) are stored as given."""
        with self.admin.begin() as connection:
            if self.kind == "mariadb":
                connection.exec_driver_sql("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
            connection.execute(sa.text(sql), dict(params or {}))

    def retype(self, table: str, column: str, sql_type: str, *, keep: bool = False) -> None:
        """Change a column's type, as a migration might. Values are converted the server's own
        way with ``keep`` (MariaDB turns a TIMESTAMP into ``20260302090000``), else dropped
        (retype an empty table, then insert)."""
        if self.kind == "mariadb":
            self.execute(f"ALTER TABLE {table} MODIFY `{column}` {sql_type} NULL")
            return
        self.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" DROP DEFAULT')
        self.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" DROP NOT NULL')
        using = f'"{column}"::text::{sql_type}' if keep else "NULL"
        self.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE {sql_type} USING {using}')

    def read_only_user(self, refused: Sequence[str] = ()) -> str:
        """A new account that may only SELECT from this database; returns its URL. ``refused``:
        tables it may not even SELECT from (a shop's role limited to the tables it was told of):
        MariaDB then gets a grant on each other table (it has no revoke of one table of a
        database-wide grant), which also hides the refused ones from its table list."""
        user = f"cr_ro_{secrets.token_hex(4)}"
        password = secrets.token_hex(8)
        server = sa.create_engine(_admin_url(self.kind, None), poolclass=sa.pool.NullPool,
                                  isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            if self.kind == "mariadb":
                connection.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
                if not refused:
                    connection.exec_driver_sql(f"GRANT SELECT ON `{self.name}`.* TO '{user}'@'%%'")
                for table in sorted(set(sa.inspect(self.admin).get_table_names()) - set(refused) if refused else ()):
                    connection.exec_driver_sql(f"GRANT SELECT ON `{self.name}`.`{table}` TO '{user}'@'%%'")
            else:
                connection.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
                connection.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{self.name}" TO {user}')
        server.dispose()
        if self.kind == "postgres":
            with self.admin.begin() as connection:
                connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {user}")
                connection.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}")
                for table in refused:
                    connection.exec_driver_sql(f'REVOKE SELECT ON "{table}" FROM {user}')
        self.users.append(user)
        url = sa.engine.make_url(self.url).set(username=user, password=password)
        return url.render_as_string(hide_password=False)

    def drop(self) -> None:
        self.admin.dispose()
        server = sa.create_engine(_admin_url(self.kind, None), poolclass=sa.pool.NullPool,
                                  isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            if self.kind == "mariadb":
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{self.name}`")
                for user in self.users:
                    connection.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
            else:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                for user in self.users:
                    connection.exec_driver_sql(f"DROP ROLE IF EXISTS {user}")
        server.dispose()


def create_database(kind: str, label: str, *, ctype_c: bool = False) -> ShopDb:
    """``ctype_c``: a PostgreSQL database whose ``LC_CTYPE`` is ``C`` (its ``LOWER()`` folds ASCII
    alone), as one made by ``initdb --no-locale`` is; MariaDB's collations have no such setting."""
    need(kind)
    name = f"cr_{re.sub(r'[^a-z0-9]', '', label.lower())[:20]}_{secrets.token_hex(4)}"
    server = sa.create_engine(_admin_url(kind, None), poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        if kind == "mariadb":
            connection.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        else:
            locale = " ENCODING 'UTF8' LC_CTYPE 'C' TEMPLATE template0" if ctype_c else ""
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"{locale}')
    server.dispose()
    url = _admin_url(kind, name)
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    return ShopDb(kind=kind, name=name, url=url.render_as_string(hide_password=False), admin=admin)


@contextmanager
def shop_database(kind: str, label: str, *, ctype_c: bool = False) -> Iterator[ShopDb]:
    """A fresh, empty database on the ``kind`` server, dropped afterwards (``ctype_c``: see
    :func:`create_database`)."""
    db = create_database(kind, label, ctype_c=ctype_c)
    try:
        yield db
    finally:
        db.drop()


@contextmanager
def ledger_on(shop: Any, kind: str, label: str = "ledger") -> Iterator[str]:
    """The URL of a ``conftest.Shop``'s ledger: its SQLite file beside its config (``kind``
    ``sqlite``), or a fresh database on the ``kind`` server (named after ``label``), configured as
    its ``ledger.url``."""
    if kind == "sqlite":
        yield f"sqlite:///{shop.folder / 'ledger.db'}"
        return
    with shop_database(kind, label) as db:
        shop.configure(ledger={"url": db.url})
        yield db.url


def write_config(folder: Path, source: Mapping[str, Any], **sections: Any) -> Path:
    """A cartrescue.yaml in ``folder`` reading ``source``, with a ledger beside it. The rules'
    weights are powers of ten, so a decision's score says which rules matched: 1 high value (a
    base total of 500 or more), 10 high margin, 100 returning customer."""
    import yaml

    config: dict[str, Any] = {
        "shop": {"name": "Test Shop", "timezone": "UTC", "from_email": "shop@example.com", "currency": "EUR",
                 "address": "Test Shop, Storgatan 1, Stockholm", "unsubscribe_secret": "test-secret-of-the-suite"},
        "source": dict(source),
        "ledger": {"url": f"sqlite:///{folder / 'ledger.db'}"},
        "eligibility": {"consent": "soft-opt-in", "quiet_hours": None},
        "priority": {
            "rules": {"high_value": {"weight": 1, "threshold": 500}, "high_margin": {"weight": 10, "threshold": 0.4},
                      "returning_customer": {"weight": 100, "min_orders": 1},
                      "overstock": {"weight": 1000, "threshold": 10**9}},
            "tiers": [{"name": "standard", "min_score": 0}],
        },
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / "cartrescue.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def configured(kind: str, label: str, fill: Any, folder: Path, source: Mapping[str, Any],
               **sections: Any) -> Iterator[tuple[ShopDb, Path]]:
    """A fresh database filled by ``fill(db)``, and a cartrescue.yaml in ``folder`` reading it."""
    with shop_database(kind, label) as db:
        fill(db)
        yield db, write_config(folder, {**source, "url": db.url}, **sections)


def plan(config: Path, now: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    """``carts --json`` at ``now``: the outcome, and its decisions by cart id."""
    from conftest import cli

    result = cli("carts", "--json", "--config", str(config), "--now", now)
    return result, {row["cart_id"]: row for row in result.json["decisions"]}


def refused_by_the_source(config: Path, now: str) -> list[str]:
    """A config whose source the shop's database refuses (a shop or store view it does not
    have): ``carts`` and ``doctor`` both exit 3; the run's error line and doctor's source check."""
    from conftest import cli

    result = cli("carts", "--json", "--config", str(config), "--now", now)
    assert result.exit_code == 3, result.output
    doctor = cli("doctor", "--json", "--config", str(config))
    assert doctor.exit_code == 3, doctor.output
    check = next(check for check in doctor.json["checks"] if check["name"] == "source")
    return [result.json["error"]["message"], check["detail"]]


def epoch(text: str) -> int:
    """A naive UTC time as seconds since 1970, as a time column retyped to BIGINT holds it."""
    from datetime import datetime, timezone

    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


class Problems(list):
    """A problem sink for sources that keeps what it was told."""

    def __call__(self, problem: Any) -> None:
        self.append(problem)

    def reasons(self) -> dict[str, str]:
        return {problem.location: problem.reason for problem in self}
