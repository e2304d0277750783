"""Shards that save their carts' decisions at the same moment on a MariaDB ledger.

Each run keeps the latest decision per cart (delete its carts' rows, then insert them). Under
InnoDB's default REPEATABLE READ the delete of carts the table does not hold yet locked the gap
at the table's end, and two shards' inserts then waited on each other's gap: one was rolled
back as a deadlock, and its shard stopped mid-delivery (exit 2, "the ledger failed while this
run delivered"), leaving what it had sent without an outcome. Three shards of the bundled sample
started together lost one about one round in five.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from shopdb import need, shop_database

from cartrescue.ledger import Ledger
from conftest import NOW


@pytest.mark.mariadb
def test_two_shards_saving_the_decisions_of_new_carts_together_do_not_deadlock() -> None:
    need("mariadb")
    with shop_database("mariadb", "decisions") as db:
        ledger = Ledger(db.url)  # makes the tables, as a first run does
        other = sa.create_engine(db.url, poolclass=sa.pool.NullPool)
        failures: list[BaseException] = []

        def save() -> None:
            try:
                ledger.save_decisions(1, NOW, [{"cart_key": "csv:a1", "email": None, "action": "send",
                                                "reason": "due", "step": 1, "tier": "standard", "score": 0.0}])
            except BaseException as exc:  # noqa: BLE001 - the test reads it
                failures.append(exc)

        try:
            # The other shard, between its delete and its insert, at the server's default level.
            with other.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
                with conn.begin():
                    conn.exec_driver_sql("DELETE FROM cr_decision WHERE cart_key IN ('csv:z1')")
                    saving = threading.Thread(target=save)
                    saving.start()
                    time.sleep(1.0)  # this shard's save is now at its insert
                    conn.exec_driver_sql(
                        "INSERT INTO cr_decision (cart_key, action, reason, decided_at, run_id) "
                        "VALUES ('csv:z1', 'send', 'due', '2026-11-20 10:00:00', 2)")
                saving.join(60)
            assert not saving.is_alive()
            assert failures == []
            with other.connect() as conn:
                keys = sorted(conn.exec_driver_sql("SELECT cart_key FROM cr_decision").scalars())
            assert keys == ["csv:a1", "csv:z1"]
        finally:
            other.dispose()
            ledger.close()
