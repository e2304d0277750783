"""PrestaShop preset: abandoned carts read straight from a PrestaShop (1.7, 8, 9) database.

Owns the mapping from PrestaShop's tables (prefix ``ps_`` by default) to carts and orders:

* ``cart`` — one cart per row of a shop (``options.shop_ids``, else each ``shop`` that is
  ``active`` and not ``deleted``) with a customer, with products, without an ``orders`` row
  but a failed or cancelled one, and ``date_upd`` in the window. PrestaShop's own index ``id_shop_2 (id_shop, date_upd)``
  serves that range;
* ``cart_product`` + ``product``/``product_shop`` (price and ``wholesale_price`` → cost, plus
  the combination's impact: the shop's ``product_attribute_shop``, else ``product_attribute``) + ``product_lang`` (name in the cart's
  language) + ``stock_available`` (quantity);
* ``customer`` — email, names, ``newsletter`` (consent; unticked after a subscription,
  ``newsletter_date_add`` set, it is a no; ``optin`` is the "offers from our partners" box, no
  consent to the shop's own mail), ``is_guest``; a ``deleted`` customer has no contact;
* ``currency`` and ``lang`` for codes; ``configuration`` for the order states and the default
  currency (``PS_CURRENCY_DEFAULT``);
* ``orders`` — orders by cart, customer or email (the report: of the shops read only);
  ``PS_OS_DELIVERED``, ``PS_OS_SHIPPING`` and the states ``order_state`` flags ``shipped`` mean delivered, ``PS_OS_CANCELED``/``PS_OS_ERROR`` are not orders,
  ``PS_OS_REFUND`` no sale (a run: still its cart's purchase, refunded in full);
* ``order_slip`` — credit slips: an order counts ``total_paid`` less its slips'
  ``total_products_tax_incl`` + ``total_shipping_tax_incl`` (both tax included, as ``total_paid``
  is, and what the shop refunded; a slip from before PrestaShop 1.6.0.11 without them:
  ``amount`` + ``shipping_cost_amount``). Without the table, a note says refunds were not read.
  Runs read the slips of the orders not delivered: PrestaShop's refunds leave the order's state
  as it was ("Payment accepted"), and one refunded in full awaits no delivery.

PrestaShop stores times in the shop's local time: they are converted with ``PS_TIMEZONE`` from
``configuration`` (else the shop's timezone; ``options.timezone`` overrides both). Settings are
read as ``Configuration::get`` reads them for the one shop read (:meth:`PrestaShopSource._settings`);
several shops share the global ones. Prices are
tax-excluded catalogue prices in the default currency (PrestaShop keeps no cart totals): a cart
in another currency shows them converted with that currency's ``conversion_rate``, as the shop
showed them, and its base total (for thresholds) is the sum in the default currency. Reads only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from cartrescue.currency import in_minor_units
from cartrescue.model import Cart, Customer, LineItem, Order
from cartrescue.sources.base import OrderFilter, Window
from cartrescue.sources.schema import INTEGER, NUMBER, TIME
from cartrescue.text import ascii_digits
from cartrescue.sources.values import refuse_unkeepable_owner
from cartrescue.sources.sql import (
    REFUNDED,
    RUN_IGNORED_ORDER_STATUSES,
    DatabaseSource,
    RecommendedIndex,
    RowError,
    order_wanted,
    any_in,
    refunded_whole,
    as_bool,
    as_currency,
    as_cost,
    as_decimal,
    as_email,
    as_locale,
    as_stock,
    as_utc,
    order_email,
    order_time,
    chunks,
    first_number,
    grouped,
    id_or_none,
    item,
    text_or_none,
    email_in,
    cart_emails,
)

_SLACK = timedelta(hours=1)  # local times repeat or skip an hour at a DST change
_STATE_DEFAULTS = {"PS_OS_SHIPPING": 4, "PS_OS_DELIVERED": 5, "PS_OS_CANCELED": 6, "PS_OS_REFUND": 7, "PS_OS_ERROR": 8}
#: The states whose goods are on their way or there: "Shipped" is what Magento's ``complete`` and
#: WooCommerce's ``completed`` are, the last state most shops set ("Delivered" is a manual step
#: many skip); read as not delivered, a shipped order held back its customer's later carts.
_DELIVERED = ("PS_OS_SHIPPING", "PS_OS_DELIVERED")


@dataclass(frozen=True, slots=True)
class _Default:
    """The shop's default currency: catalogue prices and base totals are in it."""

    iso: str | None
    rate: Decimal


class PrestaShopSource(DatabaseSource):
    """Carts from ``ps_cart``/``ps_cart_product``, orders from ``ps_orders``.

    Options: ``shop_ids`` (default: every row of ``ps_shop``), ``timezone`` (PS_TIMEZONE, if it
    differs from the shop's), ``recovery_url`` (template with ``{cart_id}`` and ``{token}``) and
    ``cookie_key`` (PrestaShop's ``_COOKIE_KEY_``, to compute ``{token}``, the ``token_cart`` of
    PrestaShop's cart-recovery links).
    """

    name = "prestashop"
    default_prefix = "ps_"
    code_tables = ("order_cart_rule", "cart_rule")  # the codes orders used (orders)
    required_tables = ("cart", "cart_product", "customer", "orders", "product", "product_lang",
                       "stock_available", "currency", "lang", "shop", "configuration")
    recommended_indexes = (
        RecommendedIndex(
            "cart", (("id_shop", "date_upd"), ("date_upd",)),
            "CREATE INDEX id_shop_2 ON {table} (id_shop, date_upd);",
        ),
    )
    column_kinds = {
        "cart": {"id_cart": INTEGER, "id_shop": INTEGER, "id_customer": INTEGER, "id_currency": INTEGER,
                 "id_lang": INTEGER, "date_add": TIME, "date_upd": TIME},
        "cart_product": {"id_cart": INTEGER, "id_product": INTEGER, "id_product_attribute": INTEGER,
                         "quantity": NUMBER},
        "customer": {"id_customer": INTEGER, "newsletter": INTEGER, "newsletter_date_add": TIME, "is_guest": INTEGER,
                     "deleted": INTEGER},
        "product": {"price": NUMBER, "wholesale_price": NUMBER},
        "product_shop": {"price": NUMBER, "wholesale_price": NUMBER},
        "product_attribute": {"price": NUMBER, "wholesale_price": NUMBER},
        "product_attribute_shop": {"price": NUMBER, "wholesale_price": NUMBER},
        "stock_available": {"quantity": NUMBER},
        "currency": {"id_currency": INTEGER, "conversion_rate": NUMBER},
        "shop": {"active": INTEGER, "deleted": INTEGER},
        "orders": {"id_order": INTEGER, "id_cart": INTEGER, "id_customer": INTEGER, "current_state": INTEGER,
                   "total_paid": NUMBER, "conversion_rate": NUMBER, "date_add": TIME},
        "order_slip": {"id_order": INTEGER, "total_products_tax_incl": NUMBER, "total_shipping_tax_incl": NUMBER,
                       "amount": NUMBER, "shipping_cost_amount": NUMBER},
        "order_cart_rule": {"deleted": INTEGER},  # PrestaShop 1.7.7+ (see orders)
        "order_state": {"id_order_state": INTEGER, "shipped": INTEGER},
    }
    window_columns = (("cart", "date_upd"),)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._states: dict[str, int] | None = None
        self._default: _Default | None = None
        self._has_slips: bool | None = None  # whether order_slip exists: asked once per run
        self._tz_read = False
        self._shops: list[int] | None = None  # options.shop_ids, once found in the shop table
        self._shipped: set[int] | None = None  # the states whose orders count as delivered: read once
        self._attribute_shop: bool | None = None  # whether product_attribute_shop exists: asked once per run

    # -- carts -------------------------------------------------------------------------------

    def _shop_ids(self) -> list[int]:
        """``options.shop_ids``, else the shops the back office has open: a disabled or deleted
        shop's carts belong to no storefront a customer can go back to. The flags are compared
        as their type compares (a copy on PostgreSQL may type them BOOLEAN)."""
        configured = self.options.get("shop_ids")
        if configured:
            if self._shops is None:
                self._shops = self.known_ids([int(shop) for shop in configured], "shop", "id_shop", "shop_ids", "shop")
            return self._shops
        schema = self.schema()
        open_shop = f"{schema.flag('active', 'shop', 'active', 1)} AND {schema.flag('deleted', 'shop', 'deleted', 0)}"
        return [int(row["id_shop"]) for row in self.db.fetch(f"SELECT id_shop FROM {self.t('shop')} WHERE {open_shop}")]

    def _store_timezone(self) -> None:
        """Read times in PS_TIMEZONE, the zone PrestaShop wrote them in (``options.timezone`` wins)."""
        if self.tz_configured or self._tz_read:
            return
        self._tz_read = True
        value = self._settings(("PS_TIMEZONE",)).get("PS_TIMEZONE")
        if value is None:
            return
        try:
            self.shop_tz = ZoneInfo(value.strip())
        except (ValueError, KeyError, OSError):
            self.problem(f"{self.db.prefix}configuration PS_TIMEZONE",
                         f"not a timezone: {value!r}; using the shop's timezone")

    def _setting_scope(self) -> tuple[int, int] | None:
        """The one shop this source reads and its group, whose own settings PrestaShop applies
        to it; None when it reads several shops, which share only the global settings."""
        shops = self._shop_ids()
        if len(shops) != 1:
            return None
        rows = self.db.fetch(f"SELECT id_shop_group FROM {self.t('shop')} WHERE id_shop = :id", {"id": shops[0]})
        group = int(rows[0]["id_shop_group"] or 0) if rows else 0
        return shops[0], group

    def _settings(self, names: Sequence[str]) -> dict[str, str]:
        """``names`` from ``configuration`` as PrestaShop's ``Configuration::get`` gives them to
        the shop read: its own row (``id_shop``), else its group's (``id_shop`` NULL,
        ``id_shop_group`` set), else the global one (both NULL). Reading every row with
        ``id_shop`` NULL let another group's setting (its own timezone, its own order
        states) win for a shop outside that group. Reading several shops: the global rows."""
        scope = self._setting_scope()
        found: dict[str, tuple[int, str]] = {}
        for row in self.db.fetch(
            f"SELECT name, value, id_shop, id_shop_group FROM {self.t('configuration')} "
            "WHERE name IN :names ORDER BY id_configuration", {"names": sorted(names)}, expanding=("names",),
        ):
            rank = _precedence(row["id_shop"], row["id_shop_group"], scope)
            if rank is not None and row["value"] is not None and rank <= found.get(row["name"], (rank,))[0]:
                found[row["name"]] = (rank, str(row["value"]))
        return {name: value for name, (_, value) in found.items()}

    def default_currency(self) -> _Default:
        """``PS_CURRENCY_DEFAULT`` and its rate (1 unless the shop changed it), read once: the
        global setting, else the first shop's (a multistore may keep it per shop only; without
        it, catalogue prices in the default currency were shown labelled as the cart's)."""
        if self._default is None:
            iso, rate = None, None
            setting = self.db.fetch(f"SELECT value FROM {self.t('configuration')} "
                                    "WHERE name = 'PS_CURRENCY_DEFAULT' "
                                    "ORDER BY CASE WHEN id_shop IS NULL THEN 0 ELSE 1 END, id_shop")
            value = str(setting[0]["value"] or "").strip() if setting else ""
            if ascii_digits(value):
                rows = self.db.fetch(f"SELECT iso_code, conversion_rate FROM {self.t('currency')} "
                                     "WHERE id_currency = :id", {"id": int(value)})
                if rows:
                    iso, rate = text_or_none(rows[0]["iso_code"]), _rate(rows[0]["conversion_rate"])
            self._default = _Default(iso.upper() if iso else None, rate or Decimal(1))
        return self._default

    def _select(self, where: str) -> str:
        return (
            "SELECT c.id_cart, c.id_shop, c.id_shop_group, c.id_customer, c.id_currency, c.date_add, c.date_upd, "
            "cu.email, cu.firstname, cu.lastname, cu.newsletter, cu.newsletter_date_add, cu.is_guest, cu.deleted, "
            "cur.iso_code AS currency, cur.conversion_rate, l.language_code, "
            "cp.id_product, cp.id_product_attribute, cp.quantity, pl.name AS product_name, "
            "p.id_product AS product_found, COALESCE(ps.active, p.active) AS product_active, "
            "p.reference AS product_reference, COALESCE(ps.price, p.price) AS base_price, "
            "COALESCE(ps.wholesale_price, p.wholesale_price) AS base_cost, "
            f"pa.reference AS attribute_reference, {self._combination_values()} "
            f"FROM {self.t('cart')} c "
            f"JOIN {self.t('cart_product')} cp ON cp.id_cart = c.id_cart "
            f"JOIN {self.t('customer')} cu ON cu.id_customer = c.id_customer "
            f"LEFT JOIN {self.t('currency')} cur ON cur.id_currency = c.id_currency "
            f"LEFT JOIN {self.t('lang')} l ON l.id_lang = c.id_lang "
            f"LEFT JOIN {self.t('product')} p ON p.id_product = cp.id_product "
            f"LEFT JOIN {self.t('product_shop')} ps ON ps.id_product = cp.id_product AND ps.id_shop = c.id_shop "
            f"LEFT JOIN {self.t('product_lang')} pl ON pl.id_product = cp.id_product "
            "AND pl.id_shop = c.id_shop AND pl.id_lang = c.id_lang "
            f"LEFT JOIN {self.t('product_attribute')} pa ON pa.id_product_attribute = cp.id_product_attribute "
            "AND cp.id_product_attribute > 0 "
            f"{self._combination_join()}"
            f"WHERE c.id_shop IN :shops AND {where} AND c.id_customer > 0 AND {self._unbought()} "
        )

    def _shop_combinations(self) -> bool:
        """Does the database have ``product_attribute_shop``, each shop's own price impact and
        cost of a combination, and may this account read it? Asked once per run; without it,
        ``product_attribute``'s alone."""
        if self._attribute_shop is None:
            self._attribute_shop = self.readable("product_attribute_shop")
        return self._attribute_shop

    def _combination_join(self) -> str:
        """The cart's shop's row of the line's combination (:meth:`_combination_values`)."""
        if not self._shop_combinations():
            return ""
        return (f"LEFT JOIN {self.t('product_attribute_shop')} pas ON pas.id_product_attribute = cp.id_product_attribute "
                "AND pas.id_shop = c.id_shop AND cp.id_product_attribute > 0 ")

    def _combination_values(self) -> str:
        """A combination's price impact and cost as PrestaShop prices a cart in its shop
        (``Product::priceCalculation``): ``product_attribute_shop``'s, else ``product_attribute``'s.
        ``product_attribute`` keeps the values of one shop only: a multistore whose shops give a
        size another impact showed every other shop's customers that one's price."""
        if not self._shop_combinations():
            return "pa.price AS attribute_price, pa.wholesale_price AS attribute_cost"
        return ("COALESCE(pas.price, pa.price) AS attribute_price, "
                "COALESCE(pas.wholesale_price, pa.wholesale_price) AS attribute_cost")

    def _unbought(self) -> str:
        """No order of the cart but a failed or cancelled one (``PS_OS_ERROR``,
        ``PS_OS_CANCELED``, this shop's ids): a refused payment or a cancelled order leaves the
        cart unbought, and a customer who goes away then has abandoned it, as Magento's restored
        quote and WooCommerce's failed order are reminded. The ids are integers read by
        :meth:`_order_states`, written into the query as such."""
        states = self._order_states()
        dead = ", ".join(str(int(states[name])) for name in ("PS_OS_CANCELED", "PS_OS_ERROR"))
        return (f"NOT EXISTS (SELECT 1 FROM {self.t('orders')} o WHERE o.id_cart = c.id_cart "
                f"AND COALESCE(o.current_state, 0) NOT IN ({dead}))")

    def carts(self, window: Window) -> Iterator[Cart]:
        self._store_timezone()
        shops = self._shop_ids()
        if not shops:
            return
        sql = self._select("c.date_upd >= :start AND c.date_upd <= :end") + \
            "ORDER BY c.date_upd, c.id_cart, cp.date_add, cp.id_product, cp.id_product_attribute"
        params = {"shops": shops, **self.window_bounds("cart", "date_upd", window, self.shop_tz, _SLACK)}
        for cart in self._read(self.db.stream(sql, params, expanding=("shops",))):
            if cart.updated_at in window:
                yield cart

    def count_carts(self, window: Window) -> int | None:
        """The carts of ``window`` the carts query reads: a customer, products, no order but a
        failed or cancelled one."""
        self._store_timezone()
        shops = self._shop_ids()
        if not shops:
            return 0
        sql = (f"SELECT COUNT(*) AS n FROM {self.t('cart')} c WHERE c.id_shop IN :shops "
               f"AND c.date_upd >= :start AND c.date_upd <= :end AND c.id_customer > 0 AND {self._unbought()} "
               f"AND EXISTS (SELECT 1 FROM {self.t('cart_product')} cp WHERE cp.id_cart = c.id_cart)")
        params = {"shops": shops, **self.window_bounds("cart", "date_upd", window, self.shop_tz, _SLACK)}
        return first_number(self.db.fetch(sql, params, expanding=("shops",)))

    def cart(self, cart_id: str) -> Cart | None:
        """One abandoned cart by its id, whatever its age (``preview``)."""
        if not ascii_digits(cart_id):
            return None
        self._store_timezone()
        self.schema()
        shops = self._shop_ids()
        if not shops:
            return None
        sql = self._select("c.id_cart = :id") + "ORDER BY cp.date_add, cp.id_product, cp.id_product_attribute"
        rows = self.db.fetch(sql, {"shops": shops, "id": int(cart_id)}, expanding=("shops",))
        return next(self._read(rows), None)

    def not_abandoned(self, cart_id: str) -> str | None:
        """Why the cart is not one :meth:`_select` reads: an order of it but a failed or
        cancelled one (:meth:`_unbought`), a shop not read, no customer, no products; three
        lookups by key."""
        if not ascii_digits(cart_id):
            return None
        params = {"id": int(cart_id)}
        carts = self.db.fetch(f"SELECT id_shop, id_customer FROM {self.t('cart')} WHERE id_cart = :id", params)
        if not carts:
            return None
        states = self._order_states()
        dead = (states["PS_OS_CANCELED"], states["PS_OS_ERROR"])
        for order in self.db.fetch(f"SELECT id_order, current_state FROM {self.t('orders')} WHERE id_cart = :id "
                                   "ORDER BY id_order", params):
            state = int(order["current_state"] or 0)
            if state not in dead:
                return f"it was ordered (order {order['id_order']}, {_status(state, states)})"
        shops, shop = self._shop_ids(), int(carts[0]["id_shop"] or 0)
        if shop not in shops:
            return (f"it is shop {shop}'s, which the source does not read "
                    f"(shops read: {', '.join(map(str, shops)) or 'none'})")
        if int(carts[0]["id_customer"] or 0) <= 0:
            return "it has no customer (a visitor's: nobody to remind)"
        if not self.db.fetch(f"SELECT 1 AS found FROM {self.t('cart_product')} WHERE id_cart = :id", params):
            return f"it is empty (no {self.db.prefix}cart_product row)"
        return None

    def _read(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[Cart]:
        default = self.default_currency()
        for chunk in chunks(grouped(rows, "id_cart"), self.chunk_size):
            stock = self._stock(chunk)
            for cart_rows in chunk:
                cart = self._cart(cart_rows, stock, default)
                if cart is not None:
                    yield cart

    def _stock(self, chunk: list[list[Mapping[str, Any]]]) -> dict[tuple[int, int, int], int | None]:
        """(product, combination, shop) -> quantity; shop 0 holds a shop group's shared stock."""
        products = sorted({row["id_product"] for rows in chunk for row in rows})
        found: dict[tuple[int, int, int], int | None] = {}
        for row in self.db.fetch(
            "SELECT id_product, id_product_attribute, id_shop, id_shop_group, quantity "
            f"FROM {self.t('stock_available')} WHERE id_product IN :ids", {"ids": products}, expanding=("ids",)
        ):
            key_shop = row["id_shop"] if row["id_shop"] else -int(row["id_shop_group"])
            found[(row["id_product"], row["id_product_attribute"], key_shop)] = as_stock(row["quantity"])
        return found

    def _cart(self, rows: list[Mapping[str, Any]], stock: Mapping[tuple[int, int, int], int | None],
              default: _Default) -> Cart | None:
        first = rows[0]
        cart_id = str(first["id_cart"])
        try:
            currency = as_currency(first["currency"]) if first["currency"] is not None else \
                _missing_currency(first)
            factor, currency = _conversion(currency, first["conversion_rate"], default)
            items: list[LineItem] = []
            base_total = Decimal(0)
            for row in rows:
                product, combination = row["id_product"], row["id_product_attribute"] or 0
                if row["product_found"] is None or not row["product_active"]:
                    continue  # the product was deleted or disabled: the shop's own cart page drops the line too
                try:
                    base = as_decimal(row["base_price"], "price")
                except RowError as exc:
                    raise RowError(f"id_product={product}: {exc}") from None
                assert base is not None
                impact = as_decimal(row["attribute_price"], "price impact", required=False) or Decimal(0)
                cost = as_cost(row["attribute_cost"], "wholesale_price")
                if not cost:
                    cost = as_cost(row["base_cost"], "wholesale_price")
                sku = text_or_none(row["attribute_reference"]) or text_or_none(row["product_reference"]) \
                    or (f"{product}-{combination}" if combination else str(product))
                on_hand = stock.get((product, combination, row["id_shop"]),
                                    stock.get((product, combination, -int(row["id_shop_group"] or 0))))
                line = item(sku, row["product_name"], row["quantity"], _shown(base + impact, factor, currency),
                            unit_cost=None if not cost else _shown(cost, factor, None), stock=on_hand)
                base_total += _shown(base + impact, None, default.iso) * line.quantity  # as the shop shows it
                items.append(line)
            deleted = bool(first["deleted"])
            # The newsletter box alone: ``optin`` is "Receive offers from our partners", a yes to
            # third parties' offers, not to the shop's own mail.
            consent = True if as_bool(first["newsletter"]) else _unsubscribed(first["newsletter_date_add"])
            customer = Customer(
                email=None if deleted else as_email(first["email"]),
                id=id_or_none(first["id_customer"]),
                first_name=None if deleted else text_or_none(first["firstname"]),
                last_name=None if deleted else text_or_none(first["lastname"]),
                locale=as_locale(first["language_code"]),
                is_guest=bool(first["is_guest"]),
                marketing_consent=consent,
            )
            created = as_utc(first["date_add"], self.shop_tz, "date_add")
            updated = as_utc(first["date_upd"], self.shop_tz, "date_upd")
            refuse_unkeepable_owner(self.name, cart_id, customer)
        except RowError as exc:
            self.problem(f"{self.db.prefix}cart id_cart={cart_id}", str(exc), cart_id=cart_id)
            return None
        return Cart(
            id=cart_id,
            source=self.name,
            customer=customer,
            currency=currency,
            items=tuple(items),
            total=sum((line.line_total for line in items), Decimal("0")),
            created_at=created,
            updated_at=updated,
            recovery_url=self.recovery_url(cart_id, self._token(cart_id)),
            store_id=text_or_none(first["id_shop"]),
            base_total=self.base_amount(base_total, default.iso),
        )

    def _token(self, cart_id: str) -> str:
        key = self.options.get("cookie_key")
        if not key:
            return ""
        return hashlib.md5(f"{key}recover_cart_{cart_id}".encode()).hexdigest()

    # -- orders ------------------------------------------------------------------------------

    def _order_states(self) -> dict[str, int]:
        if self._states is None:
            states = dict(_STATE_DEFAULTS)
            for name, value in self._settings(tuple(_STATE_DEFAULTS)).items():
                if ascii_digits(value.strip()):
                    states[name] = int(value)
            self._states = states
        return self._states

    def _delivered_states(self) -> set[int]:
        """The ids of the states an order counts as delivered in: ``PS_OS_SHIPPING`` and
        ``PS_OS_DELIVERED`` (:data:`_DELIVERED`), and each state of ``order_state`` flagged
        ``shipped`` ("Consider the associated order as shipped", what PrestaShop's own
        ``Order::hasBeenShipped`` reads): a carrier or tracking module's own "Delivered" or "In
        transit" state. Read as not delivered, each such order held back its customer's later
        carts for ``pending_within``. Without the table (a trimmed copy, or an account not granted
        it), the two settings alone."""
        if self._shipped is None:
            shipped = _delivered(self._order_states())
            if self.readable("order_state"):
                flag = self.schema().flag("shipped", "order_state", "shipped", 1)
                shipped |= {int(row["id_order_state"]) for row in self.db.fetch(
                    f"SELECT id_order_state FROM {self.t('order_state')} WHERE {flag}")}
            self._shipped = shipped
        return self._shipped

    def orders_for(self, carts: Sequence[Cart]) -> Iterator[Order]:
        """The orders of ``carts`` and their customers (by cart, customer id or address) in every
        shop, the configured ones or not: ``ps_customer`` and ``ps_orders`` are one owner's, so
        an order still to be delivered in another shop is this customer's and holds back a
        reminder. Only the report (:meth:`orders`) keeps to the shops it reads. An order in
        ``PS_OS_REFUND`` is still the purchase of its cart, and awaits no delivery."""
        if not carts:
            return
        self._store_timezone()
        self.schema()
        states = self._order_states()
        default = self.default_currency()
        named = {states["PS_OS_CANCELED"]: "canceled", states["PS_OS_REFUND"]: REFUNDED,
                 states["PS_OS_ERROR"]: "failed"}
        cart_ids = sorted({int(cart.id) for cart in carts if ascii_digits(cart.id)})
        customer_ids = sorted({int(c.customer.id) for c in carts if c.customer.id and ascii_digits(c.customer.id)})
        emails = cart_emails(carts)
        where, params, lists = any_in([
            ("o.id_cart", "cart_ids", cart_ids),
            ("o.id_customer", "customer_ids", customer_ids),
            (f"o.id_customer IN (SELECT id_customer FROM {self.t('customer')} WHERE {email_in(self.db.backend, 'email', emails=emails)})",
             "emails", emails),
        ])
        sql = (
            "SELECT o.id_order, o.id_cart, o.id_customer, o.total_paid, o.conversion_rate, o.current_state, "
            "o.date_add, cu.email, cur.iso_code "
            f"FROM {self.t('orders')} o LEFT JOIN {self.t('customer')} cu ON cu.id_customer = o.id_customer "
            f"LEFT JOIN {self.t('currency')} cur ON cur.id_currency = o.id_currency WHERE {where}"
        )
        rows = self.db.fetch(sql, params, expanding=lists)
        delivered = self._delivered_states()
        slips = self._pending_slips(rows, set(named) | delivered)
        for row in rows:
            state = int(row["current_state"] or 0)
            status = named.get(state) or _status(state, states)
            if status in RUN_IGNORED_ORDER_STATUSES:
                continue
            where = f"{self.db.prefix}orders id_order={row['id_order']}"
            try:
                total = as_decimal(row["total_paid"], "total_paid", required=False) or Decimal("0")
                created, day_start = order_time(row["date_add"], self.shop_tz, "date_add")
                yield Order(
                    id=str(row["id_order"]),
                    created_at=created,
                    day_start=day_start,
                    email=order_email(row["email"]),
                    customer_id=id_or_none(row["id_customer"]),
                    cart_id=id_or_none(row["id_cart"]),
                    total=total,
                    currency=text_or_none(row["iso_code"]),
                    status=status,
                    delivered=state in delivered,
                    base_total=self._order_base(total, row["conversion_rate"], default),
                    refunded=self._refunded(slips.get(str(row["id_order"]), ()), where, strict=False),
                )
            except RowError as exc:
                # Found but not read (a zero date, an 'infinity'): its customer's carts wait until
                # it can be, as in every other source; dropped, it let a buyer be reminded.
                self.problem(where, str(exc))
                yield Order.unreadable_row(str(row["id_order"]), where, row["email"], row["id_customer"],
                                           row["id_cart"])

    def _order_base(self, total: Decimal, rate_value: Any, default: _Default) -> Decimal | None:
        """An order's total in the base currency, by the order's own ``conversion_rate`` (the rate
        when it was placed, as the shop's back office converts it), not today's rates; None when
        the rate is unknown or the default currency is not the shop's base."""
        rate = _rate(rate_value)
        return self.base_amount(total / rate * default.rate if rate else None, default.iso)

    # -- credit slips (runs and report), orders by time (report) --------------------------------

    def _slips(self, where: str, params: Mapping[str, Any], expanding: Sequence[str] = ()
               ) -> dict[str, list[tuple[Any, Any]]]:
        """The credit slips (``order_slip``) of the orders (``o``) that ``where`` selects, by order
        id: each slip's products and shipping refunded, tax included (``total_products_tax_incl``,
        ``total_shipping_tax_incl``; a slip older than those columns: ``amount``,
        ``shipping_cost_amount``). Few orders have any, so they are held in memory. A shop
        without the table: none, and the report's note says so."""
        if self._has_slips is None:
            missing = self.missing_tables(("order_slip",))
            self._has_slips = not missing
            if missing:
                self._report_notes.append(
                    f"{self.name} source: {missing[0]} not found in {self.db.where}: credit slips are not read, "
                    "so the orders count their whole total_paid, refunds not deducted")
        if not self._has_slips:
            return {}
        sql = ("SELECT s.id_order, COALESCE(s.total_products_tax_incl, s.amount) AS products, "
               "COALESCE(s.total_shipping_tax_incl, s.shipping_cost_amount) AS shipping "
               f"FROM {self.t('order_slip')} s JOIN {self.t('orders')} o ON o.id_order = s.id_order WHERE {where}")
        slips: dict[str, list[tuple[Any, Any]]] = {}
        for row in self.db.fetch(sql, params, expanding=expanding):
            slips.setdefault(str(row["id_order"]), []).append((row["products"], row["shipping"]))
        return slips

    def _pending_slips(self, rows: Sequence[Mapping[str, Any]], settled: set[int]) -> dict[str, list[tuple[Any, Any]]]:
        """The credit slips of the orders among ``rows`` whose state is none of ``settled``
        (delivered, refunded, or no order): one query for a chunk of carts, and none when every
        order is settled, since a slip matters to a run only for an order still to be delivered."""
        pending = sorted({int(row["id_order"]) for row in rows if int(row["current_state"] or 0) not in settled})
        return self._slips("o.id_order IN :ids", {"ids": pending}, ("ids",)) if pending else {}

    def _refunded(self, slips: Iterable[tuple[Any, Any]], where: str, strict: bool) -> Decimal:
        """What ``slips`` refunded of an order (products and shipping); ``strict``: as
        :meth:`DatabaseSource.refund <cartrescue.sources.sql.DatabaseSource.refund>`."""
        return sum((self.refund(products, "order_slip total_products_tax_incl", where, strict)
                    + self.refund(shipping, "order_slip total_shipping_tax_incl", where, strict)
                    for products, shipping in slips), Decimal("0"))

    def orders(self, window: Window, wanted: OrderFilter | None = None) -> Iterator[Order]:
        """The orders placed in ``window`` (``orders.date_add``, shop-local time) in this config's
        shops, streamed, each with what its credit slips refunded (:meth:`_slips`); one refunded
        in full is no sale. Another shop's orders are that shop's report's: a customer shared by
        two shops' configs had one order credited in both reports. (:meth:`orders_for` reads every
        shop's: an undelivered order elsewhere still holds back a reminder, as one customer's.)
        Each with the vouchers it used: its ``order_cart_rule`` rows, the code being the rule's
        ``cart_rule.code`` (a rule applied by itself has none; one deleted since is unknown).
        Without them the report took every attributed order after an incentive step for a
        redemption of its code, one placed with another voucher too. A voucher removed from the
        order in the back office keeps its row, ``deleted`` set (PrestaShop 1.7.7+; older
        versions have no such column and delete the row): the order did not get it."""
        kept = ""
        schema = self.schema()
        if schema.has("order_cart_rule", "deleted"):
            kept = f"AND {schema.flag('ocr.deleted', 'order_cart_rule', 'deleted', 0)} "
        return self.with_codes(self._placed(window, wanted), (
            f"SELECT ocr.id_order AS order_id, cr.code FROM {self.t('order_cart_rule')} ocr "
            f"JOIN {self.t('cart_rule')} cr ON cr.id_cart_rule = ocr.id_cart_rule "
            f"WHERE ocr.id_order IN :ids {kept}ORDER BY ocr.id_order, ocr.id_order_cart_rule"))

    def _placed(self, window: Window, wanted: OrderFilter | None) -> Iterator[Order]:
        """:meth:`orders` without their vouchers."""
        self._store_timezone()
        states = self._order_states()
        not_orders = {states["PS_OS_CANCELED"], states["PS_OS_REFUND"], states["PS_OS_ERROR"]}
        sql = (
            "SELECT o.id_order, o.id_cart, o.id_customer, o.total_paid, o.conversion_rate, o.current_state, "
            "o.date_add, cu.email, cur.iso_code "
            f"FROM {self.t('orders')} o LEFT JOIN {self.t('customer')} cu ON cu.id_customer = o.id_customer "
            f"LEFT JOIN {self.t('currency')} cur ON cur.id_currency = o.id_currency "
            "WHERE o.date_add >= :start AND o.date_add <= :end AND o.id_shop IN :shops "
            "ORDER BY o.date_add, o.id_order"
        )
        shops = self._shop_ids()
        if not shops:
            return
        bounds = self.window_bounds("orders", "date_add", window, self.shop_tz, _SLACK)
        refunds = self._slips("o.date_add >= :start AND o.date_add <= :end", bounds)
        default = self.default_currency()
        delivered = self._delivered_states()
        for row in self.db.stream(sql, {"shops": shops, **bounds}, expanding=("shops",)):
            state = int(row["current_state"] or 0)
            if state in not_orders or (wanted is not None and not order_wanted(wanted, row["id_cart"], row["email"],
                                                                          row["id_customer"])):
                continue
            try:
                created, day_start = order_time(row["date_add"], self.shop_tz, "date_add")
                total = as_decimal(row["total_paid"], "total_paid", required=False) or Decimal("0")
                refunded = self._refunded(refunds.get(str(row["id_order"]), ()),
                                          f"{self.db.prefix}orders id_order={row['id_order']}", strict=True)
                if refunded_whole(total, refunded):
                    continue
                order = Order(
                    id=str(row["id_order"]),
                    created_at=created,
                    day_start=day_start,
                    email=order_email(row["email"]),
                    customer_id=id_or_none(row["id_customer"]),
                    cart_id=id_or_none(row["id_cart"]),
                    total=total,
                    currency=text_or_none(row["iso_code"]),
                    status=_status(state, states),
                    delivered=state in delivered,
                    refunded=refunded,  # in the order's currency: net() takes it off base_total at the order's rate
                    base_total=self._order_base(total, row["conversion_rate"], default),
                )
            except RowError as exc:
                self.problem(f"{self.db.prefix}orders id_order={row['id_order']}", str(exc))
                continue
            if window.overlaps(order.earliest, order.created_at):
                yield order


def _unsubscribed(subscribed_at: Any) -> bool | None:
    """The consent of a customer whose ``newsletter`` box is not ticked: no (False) when
    ``newsletter_date_add`` holds the day they subscribed, which PrestaShop's newsletter module
    leaves when it unsubscribes them (``newsletter = 0``), as Magento's unsubscribed subscriber
    is a no; unknown (None) when they never subscribed (NULL, or MariaDB's zero date)."""
    try:
        as_utc(subscribed_at, ZoneInfo("UTC"), "newsletter_date_add")
    except RowError:
        return None
    return False


def _precedence(id_shop: Any, id_shop_group: Any, scope: tuple[int, int] | None) -> int | None:
    """How a ``configuration`` row ranks for the shop of ``scope`` (lower wins): 0 the shop's
    own, 1 its group's, 2 global; None when it is another shop's or group's. PrestaShop reads a
    0 as it reads NULL (none)."""
    if not id_shop and not id_shop_group:
        return 2
    if scope is None:
        return None
    if id_shop:
        return 0 if int(id_shop) == scope[0] else None
    return 1 if int(id_shop_group) == scope[1] else None


def _delivered(states: Mapping[str, int]) -> set[int]:
    """The ids of the states an order counts as delivered in (:data:`_DELIVERED`)."""
    return {states[name] for name in _DELIVERED}


def _status(state: int, states: Mapping[str, int]) -> str:
    """An order's status as a run and the report name it: ``delivered``, ``shipped``, else ``state N``."""
    if state == states["PS_OS_DELIVERED"]:
        return "delivered"
    return "shipped" if state == states["PS_OS_SHIPPING"] else f"state {state}"


def _missing_currency(row: Mapping[str, Any]) -> str:
    raise RowError(f"currency: id_currency {row.get('id_currency', '?')} not found in the currency table")


def _rate(value: Any) -> Decimal | None:
    """A ``conversion_rate``: a positive number, else None (unknown)."""
    try:
        rate = as_decimal(value, "conversion_rate", required=False)
    except RowError:
        return None
    return rate if rate is not None and rate > 0 else None


def _conversion(currency: str, rate_value: Any, default: _Default) -> tuple[Decimal | None, str]:
    """The factor from the default currency to the cart's, and the currency the cart is shown in.

    The cart's own currency when its rate is known (what the customer saw); the default currency,
    unconverted, when the rate is not (a correct label rather than a wrong one).
    """
    if default.iso is None or currency == default.iso:
        return None, currency
    rate = _rate(rate_value)
    if rate is None:
        return None, default.iso
    return rate / default.rate, currency


def _shown(amount: Decimal, factor: Decimal | None, currency: str | None) -> Decimal:
    """A default-currency amount as shown in the cart's currency: converted (``factor``; None: the
    cart is in the default currency) and rounded to the currency's digits as the shop displays
    prices: half up, PrestaShop's default (``PS_PRICE_ROUND_MODE``), so 1149.885 kr shows as
    1 149,89 kr, not the half-even 1 149,88, and a stored 19.985000 € as 19,99 €. Each unit price
    is rounded, and a cart's total is the sum of its lines at those prices, as PrestaShop's default
    ``PS_ROUND_TYPE`` (round each item) sums them. Without a currency (a cost): PrestaShop's
    own 6 decimals."""
    converted = amount if factor is None else amount * factor
    if currency is None:
        return converted.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    return in_minor_units(converted, currency)
