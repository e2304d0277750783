"""WooCommerce preset: abandoned carts captured by the CartFlows cart-abandonment plugin.

WooCommerce itself keeps no guest's email for an unfinished checkout; the widely used "Cart
Abandonment Recovery for WooCommerce" plugin (CartFlows) does, in
``{prefix}cartflows_ca_cart_abandonment``. Owns the mapping from it and from WordPress/WooCommerce
tables to carts and orders:

* ``cartflows_ca_cart_abandonment`` — one cart per row whose ``order_status`` is one of
  ``options.statuses`` (default ``normal``, ``abandoned``, ``lost``; ``completed`` means it
  became an order) and whose ``time`` lies in the window. ``cart_contents`` (the WooCommerce
  cart) and ``other_fields`` (names, phone) are serialized PHP, parsed with phpserialize, never
  evaluated. ``time`` is the site's local time, converted with WordPress's ``timezone_string``
  (else ``gmt_offset``, else the shop's timezone; ``options.timezone`` overrides them);
* ``posts``/``postmeta`` — product names, ``_sku``, ``_stock``, cost (``options.cost_meta_keys``:
  WooCommerce's own cost of goods ``_cogs_total_value`` first, then cost plugins' keys); a
  variation falls back to its parent product (core COGS: adds to it when the variation's
  ``_cogs_value_is_additive`` is ``yes``);
* ``users`` — the customer id of a registered address (a multisite's subsite reads the
  network's table: ``options.users_prefix``);
* ``options`` — ``woocommerce_currency``, whether HPOS is on, and CartFlows' GDPR notice
  (``wcf_ca_gdpr_status``: a row captured under it is consent to reminders, unless unsubscribed
  there or from the shop's MailPoet newsletter, ``mailpoet_subscribers.status``);
* orders from HPOS ``wc_orders`` or from legacy ``posts``/``postmeta`` (``options.orders_table``:
  ``auto`` (default), ``hpos`` or ``legacy``). ``completed`` orders count as delivered, and so do
  the ``shipped`` and ``delivered`` statuses of shipment-tracking plugins.

The shop's newsletter sends, for ``newsletter_today``, come from MailPoet when it is installed:
``mailpoet_statistics_newsletters.sent_at`` (one row per letter sent, a MySQL TIMESTAMP, read
as UTC) joined to ``mailpoet_subscribers.email``, and ``mailpoet_newsletters.subject`` as the
campaign name. Without MailPoet's tables the sends are skipped with a note.

Reads only (see :mod:`cartrescue.sources.sql`).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo
from urllib.parse import quote_plus

from cartrescue.contacts import fold_email
from cartrescue.currency import in_minor_units
from cartrescue.errors import SourceError
from cartrescue.model import Cart, Customer, LineItem, MarketingSend, Order
from cartrescue.sources.base import OrderFilter, Window, reads_phones
from cartrescue.sources.php_serialized import PhpDataError, loads
from cartrescue.sources.schema import INTEGER, NUMBER, TIME
from cartrescue.sources.values import campaign_name, refuse_unkeepable_owner
from cartrescue.text import ascii_digits
from cartrescue.sources.sql import (
    IGNORED_ORDER_STATUSES,
    RUN_IGNORED_ORDER_STATUSES,
    UTC,
    DatabaseSource,
    RecommendedIndex,
    RowError,
    order_wanted,
    any_in,
    phone_tail,
    refunded_whole,
    as_bool,
    as_currency,
    as_cost,
    as_decimal,
    as_email,
    as_refund,
    as_stock,
    as_utc,
    order_email,
    order_status,
    order_time,
    chunks,
    first_number,
    grouped,
    id_or_none,
    item,
    local_bound,
    text_or_none,
    email_in,
    stored_forms,
    cart_emails,
)

_SLACK = timedelta(hours=1)  # local times repeat or skip an hour at a DST change
_CART_TABLE = "cartflows_ca_cart_abandonment"
#: Statuses of an order that awaits no delivery: WooCommerce's ``completed`` and the statuses
#: shipment-tracking plugins move a sent order on to (``wc-shipped``, ``wc-delivered``). Shipped
#: counts, as PrestaShop's shipped state does: read as pending, it held back the customer's carts.
_DELIVERED = frozenset({"completed", "shipped", "delivered"})
#: WooCommerce's own cost of goods (9.5+), then the cost plugins' keys (SkyVerge, WPFactory).
CORE_COGS = "_cogs_total_value"
COST_KEYS = (CORE_COGS, "_wc_cog_cost", "_alg_wc_cog_cost")
_ADDITIVE = "_cogs_value_is_additive"


class WooCommerceSource(DatabaseSource):
    """Carts from CartFlows' table, orders from ``wc_orders`` (HPOS) or ``posts`` (legacy).

    Options: ``orders_table`` (auto|hpos|legacy), ``statuses``, ``cost_meta_keys`` (or one
    ``cost_meta_key``), ``currency`` (instead of ``woocommerce_currency``), ``timezone`` (the
    site's, if it differs from the shop's), ``line_prices_include_tax`` (default false),
    ``gdpr_consent`` (default true: CartFlows' GDPR notice counts as consent), ``recovery_url``
    (template with ``{token}``, CartFlows' ``wcf_ac_token``, and ``{cart_id}``).
    """

    name = "woocommerce"
    default_prefix = "wp_"
    code_tables = ("woocommerce_order_items",)  # the codes orders used (orders)
    required_tables = (_CART_TABLE, "posts", "postmeta", "options", "users")
    recommended_indexes = (
        RecommendedIndex(
            _CART_TABLE, (("time",), ("order_status", "time")),
            "CREATE INDEX cartrescue_time ON {table} (`time`);",
        ),
    )

    column_kinds = {
        _CART_TABLE: {"id": INTEGER, "cart_total": NUMBER, "unsubscribed": INTEGER, "time": TIME},
        "wc_orders": {"id": INTEGER, "customer_id": INTEGER, "total_amount": NUMBER, "date_created_gmt": TIME},
        "posts": {"ID": INTEGER, "post_parent": INTEGER, "post_date_gmt": TIME},
        "postmeta": {"post_id": INTEGER},
        "users": {"ID": INTEGER},
    }
    window_columns = ((_CART_TABLE, "time"),)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._network_users()
        self._settings: dict[str, str] | None = None
        self._mailpoet: bool | None = None  # whether MailPoet's subscribers table is there: asked once
        keys = self.options.get("cost_meta_keys")
        if keys is None:
            keys = [self.options["cost_meta_key"]] if self.options.get("cost_meta_key") else COST_KEYS
        self.cost_keys = [str(key) for key in ([keys] if isinstance(keys, str) else keys)]
        self.statuses = [str(s) for s in self.options.get("statuses", ("normal", "abandoned", "lost"))]

    def _network_users(self) -> None:
        """On a WordPress multisite a subsite's tables are ``wp_2_…`` but its users are the
        network's, in ``wp_users``: ``options.users_prefix`` names that prefix. Without it a
        subsite's missing ``wp_2_users`` is told which prefix it most likely is."""
        users_prefix = self.options.get("users_prefix")
        if users_prefix is not None:
            self.db.table_prefixes = {"users": str(users_prefix)}
            return
        subsite = re.fullmatch(r"(.*_)\d+_", self.db.prefix)
        if subsite is not None:
            self.db.table_hints = {**self.table_hints, "users": (
                f"a multisite subsite? its users are the network's: set source.options.users_prefix: "
                f"{subsite.group(1)}")}

    def tables_required(self) -> tuple[str, ...]:
        mode = str(self.options.get("orders_table", "auto"))
        return self.required_tables + (("wc_orders",) if mode == "hpos" else ())

    # -- settings ----------------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        if self._settings is None:
            rows = self.db.fetch(
                f"SELECT option_name, option_value FROM {self.t('options')} WHERE option_name IN :names",
                {"names": ["woocommerce_currency", "woocommerce_custom_orders_table_enabled", "timezone_string",
                           "gmt_offset", "wcf_ca_gdpr_status"]},
                expanding=("names",),
            )
            self._settings = {row["option_name"]: str(row["option_value"] or "") for row in rows}
        return self._settings

    def site_timezone(self) -> None:
        """Read ``time`` in the site's zone (WordPress ``timezone_string``, else ``gmt_offset``);
        ``options.timezone`` wins, the shop's timezone is the fallback."""
        if self.tz_configured:
            return
        settings = self.settings()
        name = settings.get("timezone_string", "").strip()
        if name:
            try:
                self.shop_tz = ZoneInfo(name)
                return
            except (ValueError, KeyError, OSError):
                pass
        offset = settings.get("gmt_offset", "").strip()
        if offset:
            try:
                self.shop_tz = timezone(timedelta(hours=float(offset)))  # type: ignore[assignment]
            except ValueError:
                pass

    def currency(self) -> str:
        configured = self.options.get("currency") or self.settings().get("woocommerce_currency")
        try:
            return as_currency(configured)
        except RowError as exc:
            raise SourceError(
                f"{self.name} source: the shop's currency (woocommerce_currency option) is unusable: {exc}; "
                "set source.options.currency"
            ) from None

    def gdpr_notice(self) -> bool:
        """Whether CartFlows asks before it keeps a cart (its GDPR setting): a visitor who saw the
        notice ("saved so we can send email reminders") and did not decline agreed to reminders."""
        if not self.options.get("gdpr_consent", True):
            return False
        return self.settings().get("wcf_ca_gdpr_status", "").strip().lower() == "on"

    def orders_mode(self) -> str:
        mode = str(self.options.get("orders_table", "auto"))
        if mode == "auto":
            return "hpos" if self.settings().get("woocommerce_custom_orders_table_enabled") == "yes" else "legacy"
        if mode not in ("hpos", "legacy"):
            raise SourceError(f"{self.name} source: options.orders_table must be auto, hpos or legacy, got {mode!r}")
        return mode

    # -- carts -------------------------------------------------------------------------------

    def _select(self, where: str) -> str:
        time = self.column("time")
        return (f"SELECT id, email, cart_contents, cart_total, session_id, other_fields, unsubscribed, {time} AS at "
                f"FROM {self.t(_CART_TABLE)} WHERE {where} AND order_status IN :statuses")

    def carts(self, window: Window) -> Iterator[Cart]:
        self.site_timezone()
        time = self.column("time")
        sql = self._select(f"{time} >= :start AND {time} <= :end") + f" ORDER BY {time}, id"
        params = {**self.window_bounds(_CART_TABLE, "time", window, self.shop_tz, _SLACK), "statuses": self.statuses}
        for cart in self._read(self.db.stream(sql, params, expanding=("statuses",))):
            if cart.updated_at in window:
                yield cart

    def count_carts(self, window: Window) -> int | None:
        """The captured carts of ``window`` in the statuses read, counted."""
        self.site_timezone()
        time = self.column("time")
        params = {**self.window_bounds(_CART_TABLE, "time", window, self.shop_tz, _SLACK), "statuses": self.statuses}
        return first_number(self.db.fetch(
            f"SELECT COUNT(*) AS n FROM {self.t(_CART_TABLE)} WHERE {time} >= :start AND {time} <= :end "
            "AND order_status IN :statuses", params, expanding=("statuses",)))

    def cart(self, cart_id: str) -> Cart | None:
        """One captured cart by its id, whatever its age (``preview``)."""
        if not ascii_digits(cart_id):
            return None
        self.site_timezone()
        self.schema()
        rows = self.db.fetch(self._select("id = :id"), {"id": int(cart_id), "statuses": self.statuses},
                             expanding=("statuses",))
        return next(self._read(rows), None)

    def not_abandoned(self, cart_id: str) -> str | None:
        """Why the CartFlows row is not read: its ``order_status`` is none of ``options.statuses``
        (``completed``: the cart became an order); one lookup by key."""
        if not ascii_digits(cart_id):
            return None
        rows = self.db.fetch(f"SELECT order_status FROM {self.t(_CART_TABLE)} WHERE id = :id", {"id": int(cart_id)})
        if not rows or rows[0]["order_status"] in self.statuses:
            return None
        status = rows[0]["order_status"]
        became = "it became an order; " if status == "completed" else ""
        return f"its order_status is {status!r} ({became}the source reads {', '.join(self.statuses)})"

    def _read(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[Cart]:
        """Carts from rows of the plugin's table, a chunk at a time (products and users looked up once)."""
        currency = self.currency()
        consent = True if self.gdpr_notice() else None
        for chunk in chunks(rows, self.chunk_size):
            parsed = [(row, self._parse(row)) for row in chunk]
            readable = [(row, data) for row, data in parsed if data is not None]
            products = self._products({pid for _, (contents, _) in readable for pid in _product_ids(contents)})
            emails = {row["email"] for row, _ in readable if row["email"]}
            users, unsubscribed = self._users(emails), self._newsletter_unsubscribed(emails)
            for row, (contents, fields) in readable:
                cart = self._cart(row, contents, fields, currency, products, users,
                                  False if _folded(row["email"]) in unsubscribed else consent)
                if cart is not None:
                    yield cart

    def _where(self, row: Mapping[str, Any]) -> str:
        return f"{self.db.prefix}{_CART_TABLE} id={row['id']}"

    def _parse(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        try:
            contents = loads(row["cart_contents"])
        except PhpDataError as exc:
            self.problem(self._where(row), f"cart_contents: {exc}", cart_id=str(row["id"]))
            return None
        fields: Any = {}
        if row["other_fields"] is not None and str(row["other_fields"]).strip():
            try:
                fields = loads(row["other_fields"])
            except PhpDataError as exc:
                self.problem(self._where(row), f"other_fields: {exc}", cart_id=str(row["id"]))
                return None
        if not isinstance(contents, dict) or not all(isinstance(line, dict) for line in contents.values()):
            self.problem(self._where(row), "cart_contents: not a WooCommerce cart (expected an array of items)",
                         cart_id=str(row["id"]))
            return None
        return contents, fields if isinstance(fields, dict) else {}

    def _products(self, ids: set[int]) -> dict[int, dict[str, Any]]:
        """id -> {title, parent, meta...}; variations also get their parent's entry."""
        if not ids:
            return {}
        pk = self.column("ID")
        found: dict[int, dict[str, Any]] = {}
        for row in self.db.fetch(f"SELECT {pk} AS id, post_title, post_parent, post_status FROM {self.t('posts')} "
                                 f"WHERE {pk} IN :ids", {"ids": sorted(ids)}, expanding=("ids",)):
            found[int(row["id"])] = {"title": _title(row["post_title"]), "parent": int(row["post_parent"] or 0),
                                     "status": row["post_status"]}
        parents = {entry["parent"] for entry in found.values() if entry["parent"]} - set(found)
        if parents:
            for row in self.db.fetch(f"SELECT {pk} AS id, post_title, post_parent, post_status FROM {self.t('posts')} "
                                     f"WHERE {pk} IN :ids", {"ids": sorted(parents)}, expanding=("ids",)):
                found[int(row["id"])] = {"title": _title(row["post_title"]), "parent": 0, "status": row["post_status"]}
        if found:
            for row in self.db.fetch(
                f"SELECT post_id, meta_key, meta_value FROM {self.t('postmeta')} "
                "WHERE post_id IN :ids AND meta_key IN :keys",
                {"ids": sorted(found), "keys": ["_sku", "_price", "_stock", _ADDITIVE, *self.cost_keys]},
                expanding=("ids", "keys"),
            ):
                found[int(row["post_id"])].setdefault(row["meta_key"], row["meta_value"])
        return found

    def _users(self, emails: set[str]) -> dict[str, str]:
        forms = _lookup_forms(emails)
        if not forms:
            return {}
        pk = self.column("ID")
        rows = self.db.fetch(f"SELECT {pk} AS id, user_email FROM {self.t('users')} "
                             f"WHERE {email_in(self.db.backend, 'user_email', 'IN :emails', emails=forms)}",
                             {"emails": forms}, expanding=("emails",))
        return {_folded(row["user_email"]): str(row["id"]) for row in rows}

    def _newsletter_unsubscribed(self, emails: set[str]) -> set[str]:
        """Those of ``emails`` (folded) that unsubscribed from the shop's MailPoet newsletter
        (``mailpoet_subscribers.status``): a no to its marketing mail, as Magento's unsubscribed
        ``newsletter_subscriber`` is, which CartFlows' GDPR notice or soft opt-in overrode. None
        without MailPoet (whose tables are looked for once a run)."""
        forms = _lookup_forms(emails)
        if not forms or not self._has_mailpoet():
            return set()
        rows = self.db.fetch(f"SELECT email FROM {self.t('mailpoet_subscribers')} WHERE status = 'unsubscribed' "
                             f"AND {email_in(self.db.backend, 'email', 'IN :emails', emails=forms)}",
                             {"emails": forms}, expanding=("emails",))
        return {_folded(row["email"]) for row in rows}

    def _has_mailpoet(self) -> bool:
        if self._mailpoet is None:
            self._mailpoet = not self.missing_tables(("mailpoet_subscribers",))
        return self._mailpoet

    def _cart(self, row: Mapping[str, Any], contents: dict[str, Any], fields: dict[str, Any], currency: str,
              products: Mapping[int, dict[str, Any]], users: Mapping[str, str], consent: bool | None) -> Cart | None:
        cart_id = str(row["id"])
        try:
            lines = [self._item(line, products) for line in contents.values()]  # a:0:{} is an empty cart
            items = [line for line in lines if line is not None]
            moment = as_utc(row["at"], self.shop_tz, "time")
            email = as_email(row["email"])
            customer_id = users.get(email) if email else None
            total = as_decimal(row["cart_total"], "cart_total", required=False)
            if len(items) < len(lines):  # cart_total still counts the lines that are gone
                total = None
            unsubscribed = as_bool(row["unsubscribed"])
            customer = Customer(
                email=email,
                id=customer_id,
                phone=text_or_none(fields.get("wcf_phone_number")),
                first_name=text_or_none(fields.get("wcf_first_name")),
                last_name=text_or_none(fields.get("wcf_last_name")),
                is_guest=customer_id is None,
                marketing_consent=False if unsubscribed else consent,
            )
            refuse_unkeepable_owner(self.name, cart_id, customer)
        except RowError as exc:
            self.problem(self._where(row), str(exc), cart_id=cart_id)
            return None
        token = quote_plus(base64.b64encode(f"wcf_session_id={row['session_id']}".encode()).decode())
        return Cart(
            id=cart_id,
            source=self.name,
            customer=customer,
            currency=currency,
            items=tuple(items),
            total=total if total is not None else _lines_total(items, currency),
            created_at=moment,
            updated_at=moment,
            recovery_url=self.recovery_url(cart_id, token),
        )

    def _item(self, line: Mapping[str, Any], products: Mapping[int, dict[str, Any]]) -> LineItem | None:
        """The line, or None when its product (or a variation's parent) is deleted, trashed,
        a draft or a disabled variation: WooCommerce takes such a line out of the cart when the
        customer comes back ("can no longer be purchased"), so the reminder leaves it out."""
        product_id = _int(line.get("product_id"))
        variation_id = _int(line.get("variation_id"))
        if not product_id:
            raise RowError("cart_contents: an item without product_id")
        own = products.get(variation_id or product_id, {})
        parent = products.get(own.get("parent") or product_id, {}) if variation_id else {}
        if own.get("status") != "publish" or (variation_id and parent.get("status") != "publish"):
            return None

        def meta(key: str) -> Any:
            value = own.get(key)
            if value is None or str(value).strip() == "":
                value = parent.get(key)
            return value

        quantity = line.get("quantity")
        subtotal = as_decimal(line.get("line_subtotal"), "line_subtotal", required=False)
        if subtotal is not None and self.options.get("line_prices_include_tax"):
            subtotal += as_decimal(line.get("line_subtotal_tax"), "line_subtotal_tax", required=False) or 0
        qty = as_decimal(quantity, "quantity")
        if subtotal is not None and qty:
            price: Any = subtotal / qty
            price = price.quantize(Decimal(1)) if price == price.to_integral_value() else price.normalize()
        else:
            price = meta("_price")
        sku = text_or_none(meta("_sku")) or str(variation_id or product_id)
        return item(sku, own.get("title") or parent.get("title"), quantity, price,
                    unit_cost=self._cost(own, parent if variation_id else None), stock=as_stock(meta("_stock")))

    def _cost(self, own: Mapping[str, Any], parent: Mapping[str, Any] | None) -> Decimal | None:
        """The unit cost: the first of ``cost_keys`` that has a value, as WooCommerce resolves it.

        Core COGS: 0 on a product means "not set" (WooCommerce stores no zero cost); a
        variation's own value replaces its parent's, or adds to it when the variation's
        ``_cogs_value_is_additive`` is ``yes``. Plugin keys: the variation's, else the parent's.
        """
        for key in self.cost_keys:
            mine = as_cost(own.get(key), key)
            theirs = as_cost(parent.get(key), key) if parent is not None else None
            if key == CORE_COGS:
                theirs = theirs or None
                if parent is None:
                    mine = mine or None
                elif str(own.get(_ADDITIVE, "")).strip().lower() == "yes" and (mine is not None or theirs is not None):
                    return (theirs or Decimal(0)) + (mine or Decimal(0))
            if mine is not None:
                return mine
            if theirs is not None:
                return theirs
        return None

    # -- orders ------------------------------------------------------------------------------

    def orders_for(self, carts: Sequence[Cart]) -> Iterator[Order]:
        self.schema()
        emails = cart_emails(carts)
        customer_ids = sorted({cart.customer.id for cart in carts if cart.customer.id})
        hpos = self.orders_mode() == "hpos"
        # A checkout without an address is its customer's by phone number: the orders under it.
        tails = self.phone_tails(carts, "wc_order_addresses" if hpos else "postmeta")
        if not emails and not customer_ids and not tails:
            return iter(())
        if hpos:
            return self._hpos_orders(emails, customer_ids, tails)
        return self._legacy_orders(emails, customer_ids, tails)

    def _order(self, where: tuple[str, str], order_id: Any, status: Any, created: Any, email: Any, customer: Any,
               total: Any, currency: Any, keep: bool = False, refunds: Sequence[Any] = (),
               phone: Any = None) -> Order | None:
        """An order, or None when it is not one; ``where`` is (table and key, time column) for messages.
        An unreadable one is reported, and with ``keep`` (the orders of carts) kept as unreadable.
        ``refunds``: the amounts of its refunds (the report's, :meth:`_refunds`); refunded in full, no order.
        A run's (``keep``) ``refunded`` order (WooCommerce sets an order refunded in full to it) is
        still the purchase of its cart, and awaits no delivery (:attr:`Order.awaits_delivery`)."""
        state = order_status(text_or_none(status) or "")
        if state in (RUN_IGNORED_ORDER_STATUSES if keep else IGNORED_ORDER_STATUSES):  # a run's: a refund was bought
            return None
        try:
            created_at, day_start = order_time(created, UTC, where[1])
            amount = as_decimal(total, "total", required=False) or Decimal("0")
            refunded = sum((as_refund(refund, "refund amount") for refund in refunds), Decimal("0"))
            if refunded_whole(amount, refunded):
                return None
            return Order(
                id=str(order_id),
                created_at=created_at,
                day_start=day_start,
                email=order_email(email),
                customer_id=id_or_none(customer),
                total=amount,
                currency=text_or_none(currency),
                status=state,
                delivered=state in _DELIVERED,
                refunded=refunded,
                phone=self.order_phone(phone),
            )
        except RowError as exc:
            self.problem(f"{self.db.prefix}{where[0]}={order_id}", str(exc))
            return Order.unreadable_row(str(order_id), f"{self.db.prefix}{where[0]}={order_id}", email, customer,
                                        phone=self.order_phone(phone)) if keep else None

    def _hpos_orders(self, emails: list[str], customer_ids: list[str], tails: list[str]) -> Iterator[Order]:
        addresses = self.t("wc_order_addresses")
        phone = self._hpos_phone(bool(tails))
        where, params, lists = any_in([(email_in(self.db.backend, "billing_email", emails=emails), "emails", emails),
                                       ("customer_id", "customer_ids", [int(c) for c in customer_ids if ascii_digits(c)]),
                                       (f"id IN (SELECT order_id FROM {addresses} WHERE "
                                        f"{phone_tail(self.db.backend, 'phone')})", "tails", tails)])
        sql = ("SELECT id, status, currency, total_amount, customer_id, billing_email, date_created_gmt, "
               f"{phone} AS phone FROM {self.t('wc_orders')} o WHERE type = 'shop_order' AND ({where})")
        for row in self.db.fetch(sql, params, expanding=lists):
            order = self._order(("wc_orders id", "date_created_gmt"), row["id"], row["status"], row["date_created_gmt"],
                                row["billing_email"], row["customer_id"], row["total_amount"], row["currency"],
                                keep=True, phone=row["phone"])
            if order is not None:
                yield order

    def _hpos_phone(self, wanted: bool) -> str:
        """SQL: the number of the HPOS order ``o``."""
        return self.address_phone(wanted, "wc_order_addresses", "phone", "order_id", "id", "id")

    def _legacy_orders(self, emails: list[str], customer_ids: list[str], tails: list[str]) -> Iterator[Order]:
        where, params, lists = any_in([
            (f"(meta_key = '_billing_email' AND {email_in(self.db.backend, 'meta_value', emails=emails)})", "emails", emails),
            ("(meta_key = '_customer_user' AND meta_value {in})", "customer_ids", customer_ids),
            (f"(meta_key = '_billing_phone' AND {phone_tail(self.db.backend, 'meta_value')})", "tails", tails),
        ])
        pk = self.column("ID")
        sql = (
            f"SELECT p.{pk} AS id, p.post_status, p.post_date_gmt, m.meta_key, m.meta_value "
            f"FROM {self.t('posts')} p JOIN {self.t('postmeta')} m ON m.post_id = p.{pk} "
            "WHERE p.post_type = 'shop_order' "
            "AND m.meta_key IN ('_billing_email', '_customer_user', '_order_total', '_order_currency', '_billing_phone') "
            f"AND p.{pk} IN (SELECT post_id FROM {self.t('postmeta')} WHERE {where}) ORDER BY p.{pk}"
        )
        orders: dict[Any, dict[str, Any]] = {}
        for row in self.db.fetch(sql, params, expanding=lists):
            entry = orders.setdefault(row["id"], {"status": row["post_status"], "created": row["post_date_gmt"]})
            entry[row["meta_key"]] = row["meta_value"]
        for order_id, entry in orders.items():
            order = self._order(("posts ID", "post_date_gmt"), order_id, entry["status"], entry["created"],
                                entry.get("_billing_email"), entry.get("_customer_user"), entry.get("_order_total"),
                                entry.get("_order_currency"), keep=True, phone=entry.get("_billing_phone"))
            if order is not None:
                yield order


    # -- newsletter sends (MailPoet) -------------------------------------------------------------

    _MAILPOET_TABLES = ("mailpoet_statistics_newsletters", "mailpoet_subscribers")

    def sends_for(self, emails: Sequence[str], window: Window) -> Iterator[MarketingSend]:
        """MailPoet's letters sent to ``emails`` within ``window`` (every kind: newsletters, post
        notifications, welcome and automatic emails are all marketing the customer saw today)."""
        if not emails or not self._has_tables(self._MAILPOET_TABLES, "MailPoet's sending statistics"):
            return
        subject, join = "NULL", ""
        if not self.missing_tables(("mailpoet_newsletters",)):
            subject, join = "n.subject", f" LEFT JOIN {self.t('mailpoet_newsletters')} n ON n.id = st.newsletter_id"
        forms = stored_forms(emails)
        sql = (
            f"SELECT s.email, st.sent_at, {subject} AS subject FROM {self.t('mailpoet_statistics_newsletters')} st "
            f"JOIN {self.t('mailpoet_subscribers')} s ON s.id = st.subscriber_id{join} "
            f"WHERE {email_in(self.db.backend, 's.email', 'IN :emails', emails=forms)} AND st.sent_at >= :start AND st.sent_at <= :end"
        )
        params = {"emails": forms, "start": local_bound(window.start, UTC), "end": local_bound(window.end, UTC)}
        for row in self.db.fetch(sql, params, expanding=("emails",)):
            email = fold_email(text_or_none(row["email"]) or "")
            if email and row["sent_at"] is not None:
                yield MarketingSend(email, as_utc(row["sent_at"], UTC, "sent_at"), campaign_name(row["subject"]))

    # -- orders by time (report) -------------------------------------------------------------

    def _refunds(self, window: Window) -> dict[str, list[Any]]:
        """The amounts refunded of each order placed in ``window``, by order id: refunds are child
        orders of type ``shop_order_refund`` (HPOS: ``parent_order_id``, a negative ``total_amount``;
        legacy: ``post_parent`` and the meta ``_refund_amount``). Few orders have any, so they are
        held in memory while the orders stream."""
        if self.orders_mode() == "hpos":  # a refund's total_amount is negative: the refund is its opposite
            table = self.t("wc_orders")
            sql = (f"SELECT r.parent_order_id AS order_id, -r.total_amount AS amount FROM {table} r "
                   f"JOIN {table} o ON o.id = r.parent_order_id WHERE r.type = 'shop_order_refund' "
                   "AND o.type = 'shop_order' AND o.date_created_gmt >= :start AND o.date_created_gmt <= :end")
            bounds = self.window_bounds("wc_orders", "date_created_gmt", window, UTC)
        else:
            pk = self.column("ID")
            sql = (f"SELECT r.post_parent AS order_id, m.meta_value AS amount FROM {self.t('posts')} r "
                   f"JOIN {self.t('posts')} p ON p.{pk} = r.post_parent "
                   f"JOIN {self.t('postmeta')} m ON m.post_id = r.{pk} AND m.meta_key = '_refund_amount' "
                   "WHERE r.post_type = 'shop_order_refund' AND p.post_type = 'shop_order' "
                   "AND p.post_date_gmt >= :start AND p.post_date_gmt <= :end")
            bounds = self.window_bounds("posts", "post_date_gmt", window, UTC)
        refunds: dict[str, list[Any]] = {}
        for row in self.db.fetch(sql, bounds):
            refunds.setdefault(str(row["order_id"]), []).append(row["amount"])
        return refunds

    def orders(self, window: Window, wanted: OrderFilter | None = None) -> Iterator[Order]:
        """The orders placed in ``window`` (``date_created_gmt`` / ``post_date_gmt``), streamed,
        each with what its refunds gave back (:meth:`_refunds`) and the coupons it used: the
        ``woocommerce_order_items`` of type ``coupon``, whose ``order_item_name`` is the code (in
        lower case, as WooCommerce keeps codes; the report compares codes without case). Both
        storages keep them there. Without them the report took every attributed order after an
        incentive step for a redemption of its code, one placed with the shop's BLACKFRIDAY too."""
        return self.with_codes(self._placed(window, wanted), (
            f"SELECT order_id, order_item_name AS code FROM {self.t('woocommerce_order_items')} "
            "WHERE order_item_type = 'coupon' AND order_id IN :ids ORDER BY order_id, order_item_id"))

    def _placed(self, window: Window, wanted: OrderFilter | None) -> Iterator[Order]:
        """:meth:`orders` without their coupons, from HPOS ``wc_orders`` or legacy ``posts``."""
        refunds = self._refunds(window)
        if self.orders_mode() == "hpos":
            sql = ("SELECT id, status, currency, total_amount, customer_id, billing_email, date_created_gmt, "
                   f"{self._hpos_phone(reads_phones(wanted))} AS phone "
                   f"FROM {self.t('wc_orders')} o WHERE type = 'shop_order' "
                   "AND date_created_gmt >= :start AND date_created_gmt <= :end ORDER BY date_created_gmt, id")
            for row in self.db.stream(sql, self.window_bounds("wc_orders", "date_created_gmt", window, UTC)):
                if wanted is not None and not order_wanted(wanted, None, row["billing_email"], row["customer_id"],
                                                           row["phone"]):
                    continue
                order = self._order(("wc_orders id", "date_created_gmt"), row["id"], row["status"],
                                    row["date_created_gmt"], row["billing_email"], row["customer_id"],
                                    row["total_amount"], row["currency"], refunds=refunds.get(str(row["id"]), ()),
                                    phone=row["phone"])
                if order is not None:
                    yield order
            return
        pk = self.column("ID")
        phone_key = ", '_billing_phone'" if reads_phones(wanted) else ""  # a meta row more per order: only if asked
        sql = (
            f"SELECT p.{pk} AS id, p.post_status, p.post_date_gmt, m.meta_key, m.meta_value "
            f"FROM {self.t('posts')} p LEFT JOIN {self.t('postmeta')} m ON m.post_id = p.{pk} "
            f"AND m.meta_key IN ('_billing_email', '_customer_user', '_order_total', '_order_currency'{phone_key}) "
            "WHERE p.post_type = 'shop_order' AND p.post_date_gmt >= :start AND p.post_date_gmt <= :end "
            f"ORDER BY p.{pk}"
        )
        for rows in grouped(self.db.stream(sql, self.window_bounds("posts", "post_date_gmt", window, UTC)), "id"):
            meta = {row["meta_key"]: row["meta_value"] for row in rows if row["meta_key"]}
            first = rows[0]
            if wanted is not None and not order_wanted(wanted, None, meta.get("_billing_email"), meta.get("_customer_user"),
                                                       meta.get("_billing_phone")):
                continue
            order = self._order(("posts ID", "post_date_gmt"), first["id"], first["post_status"], first["post_date_gmt"],
                                meta.get("_billing_email"), meta.get("_customer_user"), meta.get("_order_total"),
                                meta.get("_order_currency"), refunds=refunds.get(str(first["id"]), ()),
                                phone=meta.get("_billing_phone"))
            if order is not None:
                yield order


def _folded(email: Any) -> str:
    """An address as the lookups compare it (:func:`~cartrescue.contacts.fold_email`)."""
    return fold_email(str(email or "").strip())


def _lookup_forms(emails: Iterable[Any]) -> list[str]:
    """The cart rows' addresses to look customers up by, in both stored forms (:func:`stored_forms`)."""
    return stored_forms(sorted({_folded(e) for e in emails if e and str(e).strip()}))


_TAG = re.compile(r"<[^>]*>")


def _title(value: Any) -> str | None:
    """A product's ``post_title`` as the text the shop shows. WordPress keeps titles as HTML: a
    term name's ``&`` is stored ``&amp;`` (so is a variation title made of it), kses stores an
    author's ``&`` so unless they may post unfiltered HTML, and a title may hold markup. Read as
    text, a reminder showed ``Salt &amp; Pepper <em>set</em>`` (its HTML part escaping it again)."""
    if value is None:
        return None
    return " ".join(html.unescape(_TAG.sub("", str(value))).split())


def _lines_total(items: Sequence[LineItem], currency: str) -> Decimal:
    """A cart's total from the lines it still has (``cart_total`` missing, or counting a line
    that is gone), in the currency's digits as WooCommerce shows it: unit prices are
    ``line_subtotal / quantity`` (33.33… for three at 100.00), and their sum was 99.99999999,
    below an ``eligibility.min_total`` of 100 and so in the ledger's cart value."""
    return in_minor_units(sum((line.line_total for line in items), Decimal("0")), currency)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise RowError(f"cart_contents: not an id: {value!r}") from None


def _product_ids(contents: Mapping[str, Any]) -> set[int]:
    ids: set[int] = set()
    for line in contents.values():
        for key in ("product_id", "variation_id"):
            try:
                number = int(line.get(key) or 0)
            except (TypeError, ValueError):
                continue
            if number:
                ids.add(number)
    return ids
