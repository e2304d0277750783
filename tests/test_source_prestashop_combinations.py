"""PrestaShop multistore: a combination's price impact and cost are the cart's shop's own
(``ps_product_attribute_shop``), on the real MariaDB and PostgreSQL servers."""

from __future__ import annotations

from decimal import Decimal

import pytest

import shopdb
from cartrescue.sources.prestashop import PrestaShopSource
from test_source_prestashop import WINDOW, cart, fill, product_line


def _shops_own_impacts(db: shopdb.ShopDb) -> None:
    """Size L (combination 31 of the 15.00 T-shirt) costs 2.50 more in shop 1 and 4.00 more in
    shop 2, whose cost for it is 7.00; ``product_attribute`` keeps shop 1's values. Erin's
    cart 230 in shop 2 holds one."""
    db.execute("CREATE TABLE ps_product_attribute_shop (id_product int NOT NULL, id_product_attribute int NOT NULL, "
               "id_shop int NOT NULL, wholesale_price decimal(20,6) NOT NULL DEFAULT 0, "
               "price decimal(20,6) NOT NULL DEFAULT 0, default_on smallint NULL, "
               "PRIMARY KEY (id_product_attribute, id_shop))")
    db.insert("ps_product_attribute_shop", [
        {"id_product": 3, "id_product_attribute": 31, "id_shop": 1, "price": Decimal("2.5"),
         "wholesale_price": Decimal("6")},
        {"id_product": 3, "id_product_attribute": 31, "id_shop": 2, "price": Decimal("4"),
         "wholesale_price": Decimal("7")}])
    db.insert("ps_cart", [cart(230, 7, "2026-03-28 09:00:00", shop=2)])
    db.insert("ps_cart_product", [product_line(230, 3, 1, combination=31, shop=2)])


@pytest.fixture(scope="module", params=shopdb.KINDS)
def carts(request):
    with shopdb.shop_database(request.param, "pscombinations") as db:
        fill(db)
        _shops_own_impacts(db)
        source = PrestaShopSource(db.url, options={"shop_ids": [1, 2]})
        try:
            yield {found.id: found for found in source.carts(WINDOW)}
        finally:
            source.close()


def test_a_combination_is_priced_with_the_carts_shops_own_impact_and_cost(carts):
    """``product_attribute`` alone was read: shop 2's customer was shown 17.50, shop 1's price,
    for the 19.00 the shop had shown, and the margin was judged on shop 1's cost."""
    (line,) = carts["230"].items
    assert (line.sku, line.unit_price, line.unit_cost) == ("TSHIRT-L", Decimal("19.00"), Decimal("7"))
    assert carts["230"].total == Decimal("19.00")


def test_shop_ones_combination_keeps_its_own_impact(carts):
    shirt = carts["201"].items[1]
    assert (shirt.sku, shirt.unit_price, shirt.unit_cost) == ("TSHIRT-L", Decimal("17.50"), Decimal("6"))
