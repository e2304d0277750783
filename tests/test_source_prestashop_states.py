"""PrestaShop's order states as the shop flags them (``ps_order_state``), on the real MariaDB and
PostgreSQL servers."""

from __future__ import annotations

import pytest

import shopdb
from cartrescue.sources.prestashop import PrestaShopSource
from test_source_prestashop import WINDOW, fill


def _order_states(db: shopdb.ShopDb, shipped_type: str = "smallint") -> None:
    """``ps_order_state`` trimmed from install-dev/data/db_structure.sql, with two states a
    carrier module adds: 15 "Delivered (Colissimo)", flagged shipped, and 16 "Awaiting pickup", not."""
    db.execute(f"CREATE TABLE ps_order_state (id_order_state int NOT NULL PRIMARY KEY, module_name varchar(255), "
               f"color varchar(32), logable smallint NOT NULL DEFAULT 0, delivery smallint NOT NULL DEFAULT 0, "
               f"shipped {shipped_type} NOT NULL, paid smallint NOT NULL DEFAULT 0, deleted smallint NOT NULL DEFAULT 0)")
    yes, no = (True, False) if shipped_type == "boolean" else (1, 0)
    db.insert("ps_order_state", [
        {"id_order_state": 2, "shipped": no, "paid": 1, "logable": 1},
        {"id_order_state": 3, "shipped": no, "paid": 1, "logable": 1},
        {"id_order_state": 4, "shipped": yes, "delivery": 1, "paid": 1, "logable": 1},
        {"id_order_state": 5, "shipped": yes, "delivery": 1, "paid": 1, "logable": 1},
        {"id_order_state": 15, "module_name": "colissimo", "shipped": yes, "delivery": 1, "paid": 1, "logable": 1},
        {"id_order_state": 16, "module_name": "colissimo", "shipped": no, "paid": 1, "logable": 1},
    ])


def _orders(db: shopdb.ShopDb) -> dict[str, object]:
    source = PrestaShopSource(db.url, options={"shop_ids": [1]})
    try:
        return {order.id: order for order in source.orders_for(list(source.carts(WINDOW)))}
    finally:
        source.close()


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_an_order_in_a_state_flagged_shipped_awaits_no_delivery(kind):
    """A carrier module's own "Delivered" state (flagged ``shipped``: "Consider the associated
    order as shipped") was read as not delivered, as only ``PS_OS_SHIPPING`` and
    ``PS_OS_DELIVERED`` were: each order the module moved on held back every later cart of its
    customer for ``pending_within``. A state not so flagged still awaits delivery."""
    with shopdb.shop_database(kind, "psorderstates") as db:
        fill(db)
        _order_states(db, "boolean" if kind == "postgres" else "smallint")
        db.execute("UPDATE ps_orders SET current_state = 15 WHERE id_order = 4")   # alice's: delivered by the module
        db.execute("UPDATE ps_orders SET current_state = 16, id_customer = 1 WHERE id_order = 6")  # alice's too: awaiting pickup
        orders = _orders(db)
    assert orders["4"].delivered is True and not orders["4"].awaits_delivery
    assert orders["6"].delivered is False and orders["6"].awaits_delivery


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_shop_without_the_order_state_table_reads_its_shipped_settings(kind):
    """A trimmed copy without ``ps_order_state``: ``PS_OS_SHIPPING`` and ``PS_OS_DELIVERED`` alone."""
    with shopdb.shop_database(kind, "psnoorderstates") as db:
        fill(db)
        db.execute("UPDATE ps_orders SET current_state = 5 WHERE id_order = 4")
        db.execute("UPDATE ps_orders SET current_state = 15, id_customer = 1 WHERE id_order = 6")
        orders = _orders(db)
    assert orders["4"].delivered is True
    assert orders["6"].delivered is False


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_an_account_not_granted_the_order_state_table_reads_its_shipped_settings(kind):
    """An account granted the tables docs/databases.md lists, ``ps_order_state`` not among them:
    the run goes on with ``PS_OS_SHIPPING`` and ``PS_OS_DELIVERED`` alone (a refused read
    stopped it, exit 3)."""
    with shopdb.shop_database(kind, "psstatesrefused") as db:
        fill(db)
        _order_states(db)
        db.execute("UPDATE ps_orders SET current_state = 5 WHERE id_order = 4")
        db.execute("UPDATE ps_orders SET current_state = 15, id_customer = 1 WHERE id_order = 6")
        url = db.read_only_user(refused=["ps_order_state"])
        source = PrestaShopSource(url, options={"shop_ids": [1]})
        try:
            orders = {order.id: order for order in source.orders_for(list(source.carts(WINDOW)))}
        finally:
            source.close()
    assert orders["4"].delivered is True
    assert orders["6"].delivered is False
