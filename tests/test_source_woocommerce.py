"""WooCommerce + CartFlows preset against a fixture schema on the real MariaDB and PostgreSQL
servers, with serialized PHP as WordPress stores it (phpserialize writes it, as PHP would)."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import phpserialize
import pytest

import shopdb
from cartrescue.errors import SourceError
from cartrescue.sources.base import Window
from cartrescue.sources.woocommerce import WooCommerceSource

UTC = timezone.utc
STOCKHOLM = ZoneInfo("Europe/Stockholm")  # DST starts 2026-03-29 02:00 local
NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=7), NOW - timedelta(minutes=45))


def php_cart(*lines: tuple[int, int, int, float], nul: bool = True) -> str:
    """``WC()->cart->get_cart()`` serialized: lines are (product_id, variation_id, quantity, line_subtotal).

    The ``data`` entry is the WC_Product object; WC_Data::__sleep keeps only its protected ``id``
    (``\\0*\\0id``; PostgreSQL text cannot hold NUL, so the PostgreSQL fixture uses ``id``).
    """
    cart = {}
    for product, variation, quantity, subtotal in lines:
        key = hashlib.md5(f"{product}:{variation}".encode()).hexdigest()
        prop = b"\x00*\x00id" if nul else b"id"
        cart[key] = {
            "key": key, "product_id": product, "variation_id": variation,
            "variation": {"attribute_pa_size": "l"} if variation else {}, "quantity": quantity,
            "data_hash": hashlib.md5(b"x").hexdigest(), "line_tax_data": {"subtotal": {}, "total": {}},
            "line_subtotal": subtotal, "line_subtotal_tax": round(subtotal * 0.25, 2), "line_total": subtotal,
            "line_tax": 0, "data": phpserialize.phpobject(b"WC_Product_Variation" if variation else b"WC_Product_Simple",
                                                          {prop: variation or product}),
        }
    return phpserialize.dumps(cart).decode("utf-8")


def php_fields(first: str, last: str, phone: str) -> str:
    return phpserialize.dumps({
        "wcf_billing_company": "", "wcf_billing_address_1": "Storgatan 1", "wcf_first_name": first,
        "wcf_last_name": last, "wcf_phone_number": phone, "wcf_location": "SE, Stockholm",
    }).decode("utf-8")


def abandonment(cart_id: int, email: str | None, local_time: str | None, contents: str | None, total: str | None,
                *, status: str = "abandoned", fields: str | None = None, unsubscribed: int = 0) -> dict:
    return {"id": cart_id, "checkout_id": 7, "email": email, "cart_contents": contents,
            "cart_total": None if total is None else Decimal(total), "session_id": f"session{cart_id:04d}",
            "other_fields": fields, "order_status": status, "unsubscribed": unsubscribed,
            "time": None if local_time is None else datetime.fromisoformat(local_time)}


def rows(nul: bool) -> list[dict]:
    mug = (50, 0, 1, 12.5)
    return [
        abandonment(1, "Alice@Example.com", "2026-03-29 10:00:00",   # after the DST change: 08:00Z
                    php_cart((50, 0, 2, 25.0), (60, 61, 1, 45.0), nul=nul), "87.50",
                    fields=php_fields("Alice", "Andersson", "+46701111111")),
        abandonment(2, "bob@example.com", "2026-03-29 01:30:00", php_cart(mug, nul=nul), "15.63",  # before it: 00:30Z
                    status="normal"),
        abandonment(3, "carl@example.com", "2026-03-29 09:00:00", php_cart(mug, nul=nul), "15.63",
                    status="completed"),                               # became an order
        abandonment(4, "dora@example.com", "2026-03-29 09:00:00", 'a:1:{s:32:"broken', "15.63"),
        abandonment(5, "emil@example.com", "2026-03-29 09:00:00", php_cart(mug, nul=nul), "15.63",
                    fields='a:2:{s:14:"wcf_first_name";s:4:"Emil";}'),  # says 2 entries, has 1
        abandonment(6, "fia@example.com", "2026-03-29 09:00:00", None, "15.63"),  # NULL contents
        abandonment(7, "gus@example.com", "2026-03-29 09:00:00", php_cart(mug, nul=nul), "15.63", unsubscribed=1),
        abandonment(8, "carol@example.com", "2026-03-28 12:00:00", php_cart(mug, nul=nul), None),
        abandonment(9, "dave@example.com", "2026-03-28 12:00:00", php_cart(mug, nul=nul), "15.63"),
        abandonment(10, "hugo@example.com", "2026-03-22 13:30:00", php_cart(mug, nul=nul), "15.63"),  # 12:30Z in
        abandonment(11, "ines@example.com", "2026-03-22 12:30:00", php_cart(mug, nul=nul), "15.63"),  # 11:30Z out
        # 99 was deleted (no post), 70 is in the trash, 62 a disabled variation: the mug is what is left
        abandonment(12, "jon@example.com", "2026-03-29 09:00:00",
                    php_cart(mug, (99, 0, 1, 5.0), (70, 0, 1, 3.0), (60, 62, 1, 40.0), nul=nul), "76.25"),
        abandonment(13, "kim@example.com", "2026-03-10 09:00:00", php_cart(mug, nul=nul), "15.63"),   # too old
        abandonment(14, "lo@example.com", "2026-03-29 09:00:00", 's:5:"hello";', "1.00"),  # valid PHP, not a cart
    ]


POSTS = [
    {"ID": 50, "post_title": "Coffee mug", "post_type": "product", "post_parent": 0},
    {"ID": 60, "post_title": "Hoodie", "post_type": "product", "post_parent": 0},
    {"ID": 61, "post_title": "Hoodie - L", "post_type": "product_variation", "post_parent": 60},
    {"ID": 62, "post_title": "Hoodie - XL", "post_type": "product_variation", "post_parent": 60, "post_status": "private"},
    {"ID": 70, "post_title": "Old lamp", "post_type": "product", "post_parent": 0, "post_status": "trash"},
    # legacy orders
    {"ID": 2001, "post_title": "Order", "post_type": "shop_order", "post_status": "wc-on-hold",
     "post_date_gmt": datetime(2026, 3, 20, 9, 0)},
    {"ID": 2002, "post_title": "Order", "post_type": "shop_order", "post_status": "wc-completed",
     "post_date_gmt": datetime(2026, 3, 28, 13, 0)},
    {"ID": 2003, "post_title": "Order", "post_type": "shop_order", "post_status": "wc-failed",
     "post_date_gmt": datetime(2026, 3, 28, 13, 0)},
]
META = [
    (50, "_sku", "MUG"), (50, "_price", "12.5"), (50, "_stock", "40"), (50, "_wc_cog_cost", "5"),
    (60, "_sku", "HOODIE"), (60, "_stock", "3"), (60, "_wc_cog_cost", "18"),
    (61, "_sku", "HOODIE-L"), (61, "_price", "45"), (61, "_stock", ""), (61, "_wc_cog_cost", "20"),
    (2001, "_billing_email", "carol@example.com"), (2001, "_customer_user", "0"), (2001, "_order_total", "30.00"),
    (2001, "_order_currency", "SEK"),
    (2002, "_billing_email", "dave@example.com"), (2002, "_customer_user", "0"), (2002, "_order_total", "15.63"),
    (2002, "_order_currency", "SEK"),
    (2003, "_billing_email", "dave@example.com"), (2003, "_order_total", "1.00"),
]
HPOS = [
    {"id": 1001, "status": "wc-processing", "type": "shop_order", "currency": "SEK", "total_amount": Decimal("30"),
     "customer_id": 0, "billing_email": "carol@example.com", "date_created_gmt": datetime(2026, 3, 20, 9, 0)},
    {"id": 1002, "status": "wc-completed", "type": "shop_order", "currency": "SEK", "total_amount": Decimal("15.63"),
     "customer_id": 0, "billing_email": "Dave@Example.com", "date_created_gmt": datetime(2026, 3, 28, 13, 0)},
    {"id": 1003, "status": "wc-cancelled", "type": "shop_order", "currency": "SEK", "total_amount": Decimal("9"),
     "customer_id": 0, "billing_email": "bob@example.com", "date_created_gmt": datetime(2026, 3, 28, 13, 0)},
    {"id": 1004, "status": "wc-completed", "type": "shop_order", "currency": "SEK", "total_amount": Decimal("99"),
     "customer_id": 5, "billing_email": "alice.work@example.com", "date_created_gmt": datetime(2026, 1, 5, 9, 0)},
    {"id": 1005, "status": "wc-completed", "type": "shop_order_refund", "currency": "SEK",
     "total_amount": Decimal("-30"), "customer_id": 0, "billing_email": "carol@example.com",
     "date_created_gmt": datetime(2026, 3, 21, 9, 0)},
    {"id": 1006, "status": "wc-processing", "type": "shop_order", "currency": "SEK", "total_amount": Decimal("12"),
     "customer_id": 0, "billing_email": "Jose\u0301@example.com", "date_created_gmt": datetime(2026, 1, 10, 9, 0)},
]


def fill(db: shopdb.ShopDb, prefix: str = "wp_", users_prefix: str = "wp_") -> None:
    db.schema("woocommerce", prefix=prefix)
    db.insert(f"{prefix}cartflows_ca_cart_abandonment", rows(nul=db.kind == "mariadb"))
    db.insert(f"{prefix}posts", POSTS)
    db.insert(f"{prefix}postmeta", [{"post_id": p, "meta_key": k, "meta_value": v} for p, k, v in META])
    db.insert(f"{prefix}wc_orders", HPOS)
    db.insert(f"{prefix}options", [{"option_name": "woocommerce_currency", "option_value": "SEK"},
                                   {"option_name": "woocommerce_custom_orders_table_enabled", "option_value": "yes"},
                                   {"option_name": "timezone_string", "option_value": "Europe/Stockholm"}])
    db.insert(f"{users_prefix}users", [{"ID": 5, "user_login": "alice", "user_email": "alice@example.com"}])


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop(request):
    with shopdb.shop_database(request.param, "woocommerce") as db:
        fill(db)
        yield db


@pytest.fixture
def read(shop):
    problems = shopdb.Problems()
    source = WooCommerceSource(shop.url, shop_tz=STOCKHOLM, on_problem=problems,
                               options={"recovery_url": "https://shop.example/checkout/?wcf_ac_token={token}"})
    carts = {c.id: c for c in source.carts(WINDOW)}
    yield source, carts, problems
    source.close()


def test_captured_carts_in_the_window(read):
    _, carts, _ = read
    assert sorted(carts, key=int) == ["1", "2", "7", "8", "9", "10", "12"]


def test_cart_contents_become_lines(read):
    _, carts, _ = read
    alice = carts["1"]
    assert alice.key == "woocommerce:1" and alice.currency == "SEK" and alice.total == Decimal("87.50")
    mug, hoodie = alice.items
    assert (mug.sku, mug.name, mug.quantity, mug.unit_price, mug.unit_cost, mug.stock_on_hand) == \
        ("MUG", "Coffee mug", 2, Decimal("12.5"), Decimal("5"), 40)
    # a variation: its own sku, price and cost; stock managed on the parent product
    assert (hoodie.sku, hoodie.name, hoodie.unit_price, hoodie.unit_cost, hoodie.stock_on_hand) == \
        ("HOODIE-L", "Hoodie - L", Decimal("45"), Decimal("20"), 3)
    token = quote_plus(base64.b64encode(b"wcf_session_id=session0001").decode())
    assert alice.recovery_url == f"https://shop.example/checkout/?wcf_ac_token={token}"


def test_customer_from_email_other_fields_and_users(read):
    _, carts, _ = read
    alice, bob = carts["1"].customer, carts["2"].customer
    assert (alice.email, alice.id, alice.is_guest, alice.first_name, alice.last_name, alice.phone) == \
        ("alice@example.com", "5", False, "Alice", "Andersson", "+46701111111")
    assert (bob.email, bob.id, bob.is_guest, bob.first_name) == ("bob@example.com", None, True, None)
    assert carts["7"].customer.marketing_consent is False  # unsubscribed in CartFlows
    assert alice.marketing_consent is None


@pytest.fixture(scope="module", params=shopdb.KINDS)
def multisite(request):
    """A WordPress multisite: the main site's ``wp_`` tables with the network's ``wp_users``,
    and subsite 2's ``wp_2_`` tables, which have no users table of their own."""
    with shopdb.shop_database(request.param, "woomultisite") as db:
        db.schema("woocommerce", prefix="wp_")
        fill(db, prefix="wp_2_", users_prefix="wp_")
        db.execute("DROP TABLE wp_2_users")
        yield db


def test_a_multisite_subsite_reads_the_networks_users(multisite):
    """A subsite's tables are ``wp_2_…`` but its users are the network's ``wp_users``: the
    preset looked for ``wp_2_users`` and could not read the subsite's carts at all."""
    source = WooCommerceSource(multisite.url, prefix="wp_2_", shop_tz=STOCKHOLM, options={"users_prefix": "wp_"})
    try:
        carts = {c.id: c for c in source.carts(WINDOW)}
        problems = source.check()
    finally:
        source.close()
    assert sorted(carts, key=int) == ["1", "2", "7", "8", "9", "10", "12"]
    assert carts["1"].customer.id == "5" and carts["1"].customer.is_guest is False
    assert not [problem for problem in problems if "users" in problem], problems


def test_a_subsite_without_users_prefix_is_told_the_networks_prefix(multisite):
    source = WooCommerceSource(multisite.url, prefix="wp_2_", shop_tz=STOCKHOLM)
    try:
        problems = source.check()
        with pytest.raises(SourceError) as run:
            list(source.carts(WINDOW))
    finally:
        source.close()
    assert "set source.options.users_prefix: wp_" in str(run.value)
    assert any("table wp_2_users not found" in problem and "set source.options.users_prefix: wp_" in problem
               for problem in problems), problems


def test_site_local_times_across_the_dst_change(read):
    _, carts, _ = read
    assert carts["1"].updated_at == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)    # CEST, +02:00
    assert carts["2"].updated_at == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)   # CET, +01:00
    assert carts["10"].updated_at == datetime(2026, 3, 22, 12, 30, tzinfo=UTC)
    assert carts["1"].created_at == carts["1"].updated_at


def test_missing_total_is_the_sum_of_lines(read):
    _, carts, _ = read
    assert carts["8"].total == Decimal("12.5")


def test_lines_of_deleted_trashed_or_disabled_products_are_left_out_and_the_total_follows(read):
    """WooCommerce takes them out of the cart when the customer comes back: the reminder shows
    what can still be bought, and cart_total, which still counts them, gives way to the lines."""
    _, carts, _ = read
    (line,) = carts["12"].items
    assert (line.sku, line.name, line.unit_price) == ("MUG", "Coffee mug", Decimal("12.5"))
    assert carts["12"].total == Decimal("12.5")


def test_corrupt_serialized_php_is_reported_with_the_key_and_skipped(read):
    _, _, problems = read
    reasons = problems.reasons()
    assert set(reasons) == {f"wp_cartflows_ca_cart_abandonment id={n}" for n in (4, 5, 6, 14)}
    assert reasons["wp_cartflows_ca_cart_abandonment id=4"].startswith("cart_contents: not valid serialized PHP")
    assert reasons["wp_cartflows_ca_cart_abandonment id=5"].startswith("other_fields: not valid serialized PHP")
    assert reasons["wp_cartflows_ca_cart_abandonment id=6"] == "cart_contents: missing"
    assert "not a WooCommerce cart" in reasons["wp_cartflows_ca_cart_abandonment id=14"]


def test_hpos_orders_by_email_and_customer(read):
    source, carts, _ = read
    orders = {o.id: o for o in source.orders_for(list(carts.values()))}
    # carol's order is processing (not delivered), dave's is completed; bob's was cancelled and the
    # refund is not an order; alice's earlier order is found by her customer id.
    assert set(orders) == {"1001", "1002", "1004"}
    assert orders["1001"].delivered is False and orders["1001"].status == "processing"
    assert orders["1002"].delivered is True and orders["1002"].email == "dave@example.com"
    assert orders["1002"].created_at == datetime(2026, 3, 28, 13, 0, tzinfo=UTC)
    assert orders["1004"].customer_id == "5" and orders["1004"].total == Decimal("99")


def test_an_order_stored_with_a_decomposed_address_is_found_for_the_composed_one(shop):
    """A checkout that sent the address decomposed (e + combining acute): its order was not
    found for the cart of the same address, and the buyer was reminded."""
    from cartrescue.model import Cart, Customer

    source = WooCommerceSource(shop.url, shop_tz=STOCKHOLM)
    probe = Cart(id="500", source="woocommerce", customer=Customer(email="jos\u00e9@example.com"), currency="SEK",
                 items=(), total=Decimal("12"), created_at=datetime(2026, 3, 29, tzinfo=UTC),
                 updated_at=datetime(2026, 3, 29, tzinfo=UTC))
    try:
        (order,) = list(source.orders_for([probe]))
    finally:
        source.close()
    assert order.id == "1006" and order.email == "jos\u00e9@example.com" and order.delivered is False


def test_legacy_orders_from_posts(shop, read):
    _, carts, _ = read
    source = WooCommerceSource(shop.url, shop_tz=STOCKHOLM, options={"orders_table": "legacy"})
    try:
        orders = {o.id: o for o in source.orders_for(list(carts.values()))}
    finally:
        source.close()
    assert set(orders) == {"2001", "2002"}
    assert orders["2001"].status == "on-hold" and orders["2001"].delivered is False
    assert orders["2001"].total == Decimal("30") and orders["2001"].currency == "SEK"
    assert orders["2002"].delivered is True and orders["2002"].email == "dave@example.com"


def test_unknown_shop_currency_is_one_clear_error(shop):
    source = WooCommerceSource(shop.url, options={"currency": "XXQ"})
    try:
        with pytest.raises(SourceError, match=r"^woocommerce source: the shop's currency .*XXQ"):
            list(source.carts(WINDOW))
    finally:
        source.close()


def test_doctor_recommends_an_index_on_time(shop):
    source = WooCommerceSource(shop.url, options={"orders_table": "hpos"})
    try:
        (problem,) = source.check()
    finally:
        source.close()
    assert "no index on wp_cartflows_ca_cart_abandonment(time)" in problem


def test_times_are_read_in_the_sites_timezone_even_if_the_shop_config_says_otherwise(shop):
    source = WooCommerceSource(shop.url, shop_tz=ZoneInfo("UTC"))
    try:
        carts = {c.id: c for c in source.carts(WINDOW)}
    finally:
        source.close()
    assert carts["1"].updated_at == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    assert carts["2"].updated_at == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize("mode,ids", [("hpos", {"1001"}), ("legacy", {"2001"})])
def test_orders_placed_in_a_window_from_hpos_and_legacy_tables(shop, mode, ids):
    source = WooCommerceSource(shop.url, shop_tz=STOCKHOLM, options={"orders_table": mode})
    window = Window(datetime(2026, 3, 20, 0, 0, tzinfo=UTC), datetime(2026, 3, 21, 0, 0, tzinfo=UTC))
    try:
        orders = {o.id: o for o in source.orders(window)}
        wider = {o.id for o in source.orders(Window(window.start, datetime(2026, 3, 29, tzinfo=UTC)))}
    finally:
        source.close()
    assert set(orders) == ids  # the refund (1005) is no order
    (order,) = orders.values()
    assert order.email == "carol@example.com" and order.total == Decimal("30") and order.currency == "SEK"
    assert order.created_at == datetime(2026, 3, 20, 9, 0, tzinfo=UTC)
    assert wider == ids | ({"1002"} if mode == "hpos" else {"2002"})  # cancelled and failed ones left out


def test_the_progress_total_is_the_count_of_the_window(read):
    """One COUNT over the carts query's time range (widened by a few hours for site-local times, so a
    row or so more than the window holds): never fewer than the rows read."""
    source, carts, problems = read
    total = source.progress_total(WINDOW)
    assert total is not None and (total.unit, total.position) == ("carts", None)
    assert len(carts) + len(problems.reasons()) <= total.total <= len(carts) + len(problems.reasons()) + 1


def _refunded_shop(db: shopdb.ShopDb) -> None:
    """Orders 3001-3003 (HPOS) and 4001-4003 (legacy posts): one refunded in part twice, one in full."""
    placed = datetime(2026, 3, 28, 13, 0)
    db.schema("woocommerce", prefix="wp_")
    db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "SEK"}])
    hpos = [(3001, "shop_order", None, "100"), (3002, "shop_order", None, "40"), (3003, "shop_order", None, "25"),
            (3011, "shop_order_refund", 3001, "-20"), (3012, "shop_order_refund", 3001, "-10.50"),
            (3013, "shop_order_refund", 3002, "-40")]
    db.insert("wp_wc_orders", [{"id": i, "status": "wc-completed", "type": kind, "currency": "SEK",
                                "total_amount": Decimal(total), "customer_id": 0, "parent_order_id": parent,
                                "billing_email": "e@example.com", "date_created_gmt": placed} for i, kind, parent, total in hpos])
    legacy = [(4001, "shop_order", 0), (4002, "shop_order", 0), (4003, "shop_order", 0),
              (4011, "shop_order_refund", 4001), (4012, "shop_order_refund", 4001), (4013, "shop_order_refund", 4002)]
    db.insert("wp_posts", [{"ID": i, "post_title": "Order", "post_type": kind, "post_status": "wc-completed",
                            "post_parent": parent, "post_date_gmt": placed} for i, kind, parent in legacy])
    db.insert("wp_postmeta", [{"post_id": p, "meta_key": k, "meta_value": v} for p, k, v in [
        (4001, "_order_total", "100.00"), (4002, "_order_total", "40.00"), (4003, "_order_total", "25.00"),
        (4011, "_refund_amount", "20.00"), (4011, "_order_total", "-20.00"), (4012, "_refund_amount", "10.50"),
        (4013, "_refund_amount", "40.00")]])


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_the_reports_orders_are_net_of_their_refund_orders(kind):
    """Refund child orders were not read: a partly refunded order counted its whole total."""
    window = Window(datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 29, tzinfo=UTC))
    with shopdb.shop_database(kind, "wooref") as db:
        _refunded_shop(db)
        found = {}
        for mode in ("hpos", "legacy"):
            source = WooCommerceSource(db.url, shop_tz=STOCKHOLM, options={"orders_table": mode})
            try:
                found.update({o.id: o.net()[0] for o in source.orders(window)})
            finally:
                source.close()
    # 3002 and 4002 were refunded in full: no sale
    assert found == {"3001": Decimal("69.50"), "3003": Decimal("25"), "4001": Decimal("69.50"), "4003": Decimal("25")}


@pytest.mark.mariadb
def test_a_name_holding_a_nul_costs_its_cart_alone():
    """A NUL in a customer's name (other_fields, serialized PHP keeps any byte) would reach the
    ledger's PostgreSQL rows or a message: the cart is reported and skipped, the others read."""
    with shopdb.shop_database("mariadb", "woonul") as db:
        db.schema("woocommerce", prefix="wp_")
        mug = (50, 0, 1, 12.5)
        db.insert("wp_cartflows_ca_cart_abandonment", [
            abandonment(1, "alice@example.com", "2026-03-29 10:00:00", php_cart(mug), "15.63",
                        fields=php_fields("Al\x00ice", "Andersson", "+46701111111")),
            abandonment(2, "bob@example.com", "2026-03-29 10:00:00", php_cart(mug), "15.63",
                        fields=php_fields("Bob", "Berg", "+46702222222")),
        ])
        db.insert("wp_posts", [row for row in POSTS if row["ID"] == 50])
        db.insert("wp_postmeta", [{"post_id": p, "meta_key": k, "meta_value": v} for p, k, v in META if p == 50])
        db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "SEK"},
                                 {"option_name": "timezone_string", "option_value": "Europe/Stockholm"}])
        problems = shopdb.Problems()
        source = WooCommerceSource(db.url, shop_tz=STOCKHOLM, on_problem=problems,
                                   options={"recovery_url": "https://shop.example/checkout/?wcf_ac_token={token}"})
        try:
            carts = {c.id: c for c in source.carts(WINDOW)}
        finally:
            source.close()
    assert sorted(carts) == ["2"]
    assert problems.reasons() == {
        "wp_cartflows_ca_cart_abandonment id=1": "first_name: holds a NUL character (\\x00), which no ledger can keep"}


@pytest.fixture(scope="module", params=shopdb.KINDS)
def mailpoet(request):
    """The shop with CartFlows' GDPR notice on and MailPoet installed: bob unsubscribed from the
    shop's newsletter (his address stored as MailPoet's form kept it), alice subscribed, jon
    not confirmed yet."""
    with shopdb.shop_database(request.param, "woomailpoet") as db:
        fill(db)
        db.insert("wp_options", [{"option_name": "wcf_ca_gdpr_status", "option_value": "on"}])
        db.schema("woocommerce-mailpoet", prefix="wp_")
        db.insert("wp_mailpoet_subscribers", [
            {"id": 1, "email": " Bob@Example.com", "status": "unsubscribed"},
            {"id": 2, "email": "alice@example.com", "status": "subscribed"},
            {"id": 3, "email": "jon@example.com", "status": "unconfirmed"},
        ])
        yield db


def test_an_address_unsubscribed_from_the_shops_mailpoet_newsletter_has_no_consent(mailpoet):
    """A customer who unsubscribed from the shop's MailPoet newsletter said no to its marketing
    mail, as Magento's unsubscribed newsletter_subscriber is a no: the GDPR notice of a later
    cart (or soft opt-in) sent him reminders all the same."""
    source = WooCommerceSource(mailpoet.url, shop_tz=STOCKHOLM)
    try:
        consent = {c.id: c.customer.marketing_consent for c in source.carts(WINDOW)}
    finally:
        source.close()
    assert consent["2"] is False  # bob: unsubscribed in MailPoet
    assert consent["7"] is False  # gus: unsubscribed in CartFlows
    assert consent["1"] is True and consent["12"] is True  # subscribed, unconfirmed: the notice decides


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_orders_a_shipment_plugin_marks_shipped_or_delivered_await_no_delivery(kind):
    """Shipment-tracking plugins move a sent order on from ``completed`` to ``wc-shipped`` or
    ``wc-delivered``: read as not delivered, that order held back every later cart of its customer
    (PrestaShop's shipped state counts as delivered for the same reason). Partly shipped still awaits."""
    from cartrescue.model import Cart, Customer

    placed = datetime(2026, 3, 28, 13, 0)
    with shopdb.shop_database(kind, "wooship") as db:
        db.schema("woocommerce", prefix="wp_")
        db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "SEK"}])
        db.insert("wp_wc_orders", [{"id": i, "status": status, "type": "shop_order", "currency": "SEK",
                                    "total_amount": Decimal("10"), "customer_id": 0, "parent_order_id": None,
                                    "billing_email": "e@example.com", "date_created_gmt": placed}
                                   for i, status in [(5001, "wc-shipped"), (5002, "wc-delivered"),
                                                     (5003, "wc-partial-shipped"), (5004, "wc-processing")]])
        probe = Cart(id="500", source="woocommerce", customer=Customer(email="e@example.com"), currency="SEK",
                     items=(), total=Decimal("12"), created_at=datetime(2026, 3, 29, tzinfo=UTC),
                     updated_at=datetime(2026, 3, 29, tzinfo=UTC))
        source = WooCommerceSource(db.url, shop_tz=STOCKHOLM, options={"orders_table": "hpos"})
        try:
            delivered = {o.id: o.delivered for o in source.orders_for([probe])}
        finally:
            source.close()
    assert delivered == {"5001": True, "5002": True, "5003": False, "5004": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_product_title_kept_as_html_is_read_as_the_text_the_shop_shows(kind):
    """WordPress keeps a post title as HTML: a term name's ``&`` is stored ``&amp;`` (and so is a
    variation's title made of it), an author without ``unfiltered_html`` saves ``&amp;`` too, and
    a title may hold markup. The reminder showed ``Salt &amp; Pepper <em>set</em>`` as written,
    its HTML part escaping it once more (``&amp;amp;``); it now shows the text the shop shows."""
    with shopdb.shop_database(kind, "wootitles") as db:
        fill(db)
        db.insert("wp_posts", [
            {"ID": 80, "post_title": "Salt &amp; Pepper 🌶️ <em>set</em> &#8211; large", "post_type": "product",
             "post_parent": 0},
            {"ID": 81, "post_title": "Hoodie - Black &amp; White", "post_type": "product_variation",
             "post_parent": 60}])
        db.insert("wp_cartflows_ca_cart_abandonment", [
            abandonment(20, "titles@example.com", "2026-03-29 09:00:00",
                        php_cart((80, 0, 1, 10.0), (60, 81, 1, 45.0), nul=kind == "mariadb"), "55.00")])
        source = WooCommerceSource(db.url, shop_tz=STOCKHOLM, on_problem=shopdb.Problems())
        try:
            (found,) = [c for c in source.carts(WINDOW) if c.id == "20"]
        finally:
            source.close()
    assert [line.name for line in found.items] == ["Salt & Pepper 🌶️ set – large", "Hoodie - Black & White"]


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_the_index_doctor_advises_can_be_created_as_written(kind):
    """doctor advised ``CREATE INDEX … (`time`);`` on every server: PostgreSQL refuses MySQL's
    backticks (a syntax error), so the owner's copy of the advice failed. It now quotes the
    column as the database does, and once the statement has run, doctor is content."""
    with shopdb.shop_database(kind, "wooindex") as db:
        fill(db, prefix="shop7_", users_prefix="shop7_")
        source = WooCommerceSource(db.url, prefix="shop7_", options={"orders_table": "hpos"})
        try:
            (problem,) = source.check()
            db.execute(problem.split("Create it with: ", 1)[1])
            assert source.check() == []
        finally:
            source.close()
