"""Magento 2 preset: abandoned quotes read straight from a Magento 2 (Open Source / Adobe
Commerce) database.

Owns the mapping from Magento's tables to carts and orders:

* ``quote`` — one cart per row with ``is_active = 1``, ``items_count > 0``, no ``sales_order``
  row with its ``quote_id`` but a canceled one (a quote restored after a failed payment), and
  ``updated_at`` in the window (an indexed range: see docs/databases.md for the index);
* ``quote_item`` — the lines; child rows (``parent_item_id`` set: the simple product chosen in a
  configurable, a bundle's parts) are not lines of their own, their parent carries the price;
  a configurable line takes its stock from the chosen child;
* ``quote_address`` — a guest's email and phone (the quote itself often has none);
* ``sales_order`` — orders by quote, email or customer id;
* ``cataloginventory_stock_item`` — stock on hand; ``quote_item.base_cost`` — cost (margin),
  the chosen child's when a configurable's own row has none;
* ``newsletter_subscriber`` — consent: subscribed means yes, unsubscribed means no.

The shop's newsletter sends, for ``newsletter_today``, come from the core newsletter queue:
``newsletter_queue_link.letter_sent_at`` (set when the letter went out; a queued or scheduled
letter has none yet) joined to ``newsletter_subscriber.subscriber_email``, and the queue's
subject as the campaign name. Without these tables the sends are skipped with a note.

Money: lines and totals in the quote's currency (what the customer saw), in its digits (:func:`_shown`:
Magento stores 4 decimals, the other presets give 60.00 and 1500 ¥); the base amount for
thresholds is ``base_grand_total`` (see :mod:`cartrescue.currency`); the report counts an order's
``grand_total`` less ``total_refunded`` (``base_total_refunded`` in the base currency), and
the incentive code it used from ``coupon_code``. Magento stores every time
in UTC; a quote flagged for recollection is as old as its lines' and addresses' latest change
(:func:`_last_activity`). It reads only; the connection is read-only (see :mod:`cartrescue.sources.sql`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from cartrescue.contacts import normalize_email
from cartrescue.currency import in_minor_units
from cartrescue.model import Cart, Customer, LineItem, MarketingSend, Order
from cartrescue.scratch import ScratchDb
from cartrescue.sources.base import Activity, OrderFilter, Window, ignore_problem, reads_phones
from cartrescue.sources.schema import INTEGER, NUMBER, TIME
from cartrescue.sources.values import campaign_name, refuse_unkeepable_owner
from cartrescue.text import ascii_digits
from cartrescue.sources.sql import (
    IGNORED_ORDER_STATUSES,
    REFUNDED,
    RUN_IGNORED_ORDER_STATUSES,
    UTC,
    DatabaseSource,
    RecommendedIndex,
    RowError,
    order_wanted,
    any_in,
    phone_tail,
    refunded_whole,
    as_currency,
    as_cost,
    as_decimal,
    as_email,
    as_locale,
    as_refund,
    as_stock,
    as_utc,
    order_email,
    order_time,
    chunks,
    first_number,
    grouped,
    id_or_none,
    item,
    local_bound,
    text_or_none,
    codes_of,
    email_in,
    stored_forms,
    cart_emails,
)

#: Magento order states: which mean "not an order" for cartrescue, which mean delivered.
_CANCELED = "canceled"
_STATE_STATUS = {_CANCELED: "canceled", "closed": REFUNDED}
_DELIVERED_STATES = frozenset({"complete"})
#: newsletter_subscriber.subscriber_status: 1 subscribed, 2 not active, 3 unsubscribed, 4 unconfirmed.
_SUBSCRIBED, _UNSUBSCRIBED = 1, 3


class MagentoSource(DatabaseSource):
    """Carts from ``quote``/``quote_item``/``quote_address``, orders from ``sales_order``.

    Options: ``store_ids`` (default: every store view), ``stock_id`` (default 1), ``store_locales`` ({store_id: locale}),
    ``recovery_url`` (a template with ``{cart_id}``), ``consent`` (``newsletter``, the default,
    or ``none``), ``line_prices_include_tax`` (default false: lines without tax).
    """

    name = "magento2"
    default_prefix = ""
    required_tables = ("quote", "quote_item", "quote_address", "sales_order", "cataloginventory_stock_item")
    recommended_indexes = (
        RecommendedIndex(
            "quote", (("is_active", "updated_at"), ("updated_at",)),
            "CREATE INDEX CARTRESCUE_QUOTE_IS_ACTIVE_UPDATED_AT ON {table} (is_active, updated_at);",
        ),
    )
    column_kinds = {
        "quote": {"entity_id": INTEGER, "store_id": INTEGER, "created_at": TIME, "updated_at": TIME,
                  "is_active": INTEGER, "items_count": INTEGER, "customer_id": INTEGER,
                  "customer_is_guest": INTEGER, "grand_total": NUMBER, "base_grand_total": NUMBER,
                  "base_to_quote_rate": NUMBER, "trigger_recollect": INTEGER, "subtotal": NUMBER},
        "quote_item": {"item_id": INTEGER, "quote_id": INTEGER, "parent_item_id": INTEGER, "product_id": INTEGER,
                       "qty": NUMBER, "price": NUMBER, "base_cost": NUMBER, "row_total": NUMBER, "updated_at": TIME},
        "quote_address": {"quote_id": INTEGER, "updated_at": TIME},
        "sales_order": {"entity_id": INTEGER, "quote_id": INTEGER, "customer_id": INTEGER, "grand_total": NUMBER,
                        "base_grand_total": NUMBER, "created_at": TIME, "total_refunded": NUMBER,
                        "base_total_refunded": NUMBER},
        "cataloginventory_stock_item": {"product_id": INTEGER, "stock_id": INTEGER, "qty": NUMBER},
        "newsletter_subscriber": {"customer_id": INTEGER, "store_id": INTEGER, "subscriber_status": INTEGER},
    }
    window_columns = (("quote", "updated_at"),)
    table_hints = {"newsletter_subscriber": "without Magento's newsletter module, set source.options.consent: none "
                                            "and give consent another way (docs/databases.md)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stores: list[int] | None = None  # options.store_ids, once found in the store table

    def tables_required(self) -> tuple[str, ...]:
        return self.required_tables + (("newsletter_subscriber",) if self._consent_from_newsletter() else ())

    def _consent_from_newsletter(self) -> bool:
        return str(self.options.get("consent", "newsletter")) != "none"

    def _prices_with_tax(self) -> bool:
        """``line_prices_include_tax``: the shop's cart shows prices with tax (Magento's "Display
        Cart Prices: Including Tax", as EU shops do), as its grand total includes it."""
        return bool(self.options.get("line_prices_include_tax"))

    def _shown_price(self, row: Mapping[str, Any]) -> Any:
        """A line's unit price as the cart page showed it: ``price`` is without tax, and a shop
        that shows prices with tax listed a line at 39.33 under a total of 46.80; with
        ``line_prices_include_tax``, ``price_incl_tax``, else ``price`` where Magento left none
        (a quote whose totals were never collected)."""
        if self._prices_with_tax() and row["price_incl_tax"] is not None:
            return row["price_incl_tax"]
        return row["price"]

    # -- carts -------------------------------------------------------------------------------

    def _store_ids(self) -> list[int] | None:
        """``options.store_ids``, once each is found in ``store`` where the database has it (a
        typo read no cart, every run); None: every store view's quotes."""
        configured = self.options.get("store_ids")
        if not configured:
            return None
        if self._stores is None:
            stores = [int(store) for store in configured]
            readable = self.readable("store")
            self._stores = self.known_ids(stores, "store", "store_id", "store_ids", "store view") if readable else stores
        return self._stores

    def _of_stores(self, column: str) -> str:
        """The SQL condition that ``column`` is a store view this source reads (``store_ids``),
        written in as integers; empty when it reads them all. A shop whose store views have
        their own domains (and so their own links, sender and ``shop.url``) gives each a config:
        without it, every store view's carts went out with one store's links, and each config's
        report credited every store's orders."""
        stores = self._store_ids()
        return f" AND {column} IN ({', '.join(str(int(store)) for store in stores)})" if stores else ""

    def _abandoned(self) -> str:
        """Active, not empty, of a store view read (:meth:`_of_stores`), and no order of it but
        a canceled one: when a payment fails Magento cancels the order and makes its quote
        active again for another try (``restoreQuote``), and a customer who leaves then has
        abandoned that cart. An order pending payment still hides it: the customer may be paying."""
        return (f"{self.schema().flag('q.is_active', 'quote', 'is_active', 1)} AND q.items_count > 0"
                f"{self._of_stores('q.store_id')} "
                f"AND NOT EXISTS (SELECT 1 FROM {self.t('sales_order')} o WHERE o.quote_id = q.entity_id "
                # the order's state as _order reads it: its state, else its status
                f"AND LOWER(COALESCE(NULLIF(TRIM(o.state), ''), TRIM(o.status), '')) <> '{_CANCELED}')")

    def _filters(self) -> str:
        return f"q.updated_at >= :start AND q.updated_at <= :end AND {self._abandoned()}"

    def _window(self, window: Window) -> dict[str, Any]:
        return self.window_bounds("quote", "updated_at", window, UTC)

    def _select(self, where: str) -> str:
        return (
            "SELECT q.entity_id AS quote_id, q.store_id, q.created_at, q.updated_at, q.customer_id, "
            "q.customer_email, q.customer_firstname, q.customer_lastname, q.customer_is_guest, "
            "q.quote_currency_code, q.base_currency_code, q.base_to_quote_rate, q.grand_total, "
            f"q.base_grand_total, q.trigger_recollect, q.items_count, q.subtotal, {self._touched()} "
            f"FROM {self.t('quote')} q WHERE {where}"
        )

    def _touched(self) -> str:
        """The latest change of a flagged quote's lines and addresses (:func:`_last_activity`),
        looked up only for a quote flagged for recollection (few: those the customer has not
        been back to since a product or price changed), by ``quote_id``, which both index."""
        flagged = self.schema().flag("q.trigger_recollect", "quote", "trigger_recollect", 1)
        return ", ".join(
            f"CASE WHEN {flagged} THEN (SELECT MAX(t.updated_at) FROM {self.t(table)} t "
            f"WHERE t.quote_id = q.entity_id) END AS {alias}"
            for table, alias in (("quote_item", "lines_updated_at"), ("quote_address", "addresses_updated_at")))

    def carts(self, window: Window) -> Iterator[Cart]:
        sql = self._select(self._filters()) + " ORDER BY q.updated_at, q.entity_id"
        for chunk in chunks(self.db.stream(sql, self._window(window)), self.chunk_size):
            # a flagged quote's last activity may lie before its updated_at, and the window
            yield from (cart for cart in self._build_chunk(chunk) if cart.updated_at in window)

    def count_carts(self, window: Window) -> int | None:
        """The abandoned quotes of ``window``: the carts query's filter, counted (its index)."""
        return first_number(self.db.fetch(f"SELECT COUNT(*) AS n FROM {self.t('quote')} q WHERE {self._filters()}",
                                          self._window(window)))

    def cart(self, cart_id: str) -> Cart | None:
        """One abandoned quote by its id, whatever its age (``preview``)."""
        if not ascii_digits(cart_id):
            return None
        self.schema()
        rows = self.db.fetch(self._select(f"q.entity_id = :id AND {self._abandoned()}"), {"id": int(cart_id)})
        return next(self._build_chunk(rows), None) if rows else None

    def not_abandoned(self, cart_id: str) -> str | None:
        """Why the quote is not an abandoned cart (:meth:`_abandoned`): an order of it that is
        not canceled (a pending payment's too), else inactive, else empty; two lookups by key."""
        if not ascii_digits(cart_id):
            return None
        flag = self.schema().flag("q.is_active", "quote", "is_active", 1)
        quotes = self.db.fetch(f"SELECT CASE WHEN {flag} THEN 1 ELSE 0 END AS active, q.items_count, q.store_id "
                               f"FROM {self.t('quote')} q WHERE q.entity_id = :id", {"id": int(cart_id)})
        if not quotes:
            return None
        for order in self.db.fetch(
            f"SELECT entity_id, increment_id, state, status FROM {self.t('sales_order')} WHERE quote_id = :id "
            "ORDER BY entity_id", {"id": int(cart_id)},
        ):
            status = text_or_none(order["status"]) or text_or_none(order["state"]) or "no status"
            if (text_or_none(order["state"]) or status).lower() != _CANCELED:
                return f"it was ordered (order {text_or_none(order['increment_id']) or order['entity_id']}, {status})"
        stores = self._store_ids()
        if stores and int(quotes[0]["store_id"] or 0) not in stores:
            return (f"it is store view {quotes[0]['store_id']}'s, which the source does not read "
                    f"(store_ids: {', '.join(map(str, stores))})")
        if not quotes[0]["active"]:
            return "the quote is inactive (converted or closed)"
        if not quotes[0]["items_count"]:
            return f"it is empty (items_count {quotes[0]['items_count']})"
        return None

    def _build_chunk(self, quotes: list[Mapping[str, Any]], first_pass: bool = False) -> Iterator[Cart]:
        """The lines, addresses and stock of a chunk of quotes: three indexed lookups, and the
        newsletter's. The ``first_pass`` (:meth:`_readable`) looks up neither stock nor the
        newsletter: neither can cost a quote."""
        quote_ids = [quote["quote_id"] for quote in quotes]
        lines: dict[Any, list[Mapping[str, Any]]] = {}
        for row in self.db.fetch(
            "SELECT quote_id, item_id, parent_item_id, product_id, product_type, sku, name, qty, price, base_cost, "
            f"row_total{', price_incl_tax' if self._prices_with_tax() else ''} "
            f"FROM {self.t('quote_item')} WHERE quote_id IN :ids ORDER BY quote_id, item_id",
            {"ids": quote_ids}, expanding=("ids",),
        ):
            lines.setdefault(row["quote_id"], []).append(row)
        addresses: dict[Any, list[Mapping[str, Any]]] = {}
        for row in self.db.fetch(
            f"SELECT quote_id, address_type, email, telephone, firstname, lastname "
            f"FROM {self.t('quote_address')} WHERE quote_id IN :ids ORDER BY address_id",
            {"ids": quote_ids}, expanding=("ids",),
        ):
            addresses.setdefault(row["quote_id"], []).append(row)
        children: dict[Any, Mapping[str, Any]] = {}  # parent item id -> its (first) child row
        product_ids: set[Any] = set()
        for rows in lines.values():
            for row in rows:
                if row["product_id"] is not None:
                    product_ids.add(row["product_id"])
                if row["parent_item_id"] is not None:
                    children.setdefault(row["parent_item_id"], row)
        stock: dict[Any, int | None] = {}
        if product_ids and not first_pass:
            for row in self.db.fetch(
                f"SELECT product_id, qty FROM {self.t('cataloginventory_stock_item')} "
                "WHERE product_id IN :ids AND stock_id = :stock_id",
                {"ids": sorted(product_ids), "stock_id": int(self.options.get("stock_id", 1))},
                expanding=("ids",),
            ):
                stock[row["product_id"]] = as_stock(row["qty"])
        subscriptions = [] if first_pass else self._subscriptions(quotes, addresses)
        for quote in quotes:
            cart = self._cart(quote, lines.get(quote["quote_id"], []), addresses.get(quote["quote_id"], []),
                              stock, children, subscriptions)
            if cart is not None:
                yield cart

    def _subscriptions(self, quotes: list[Mapping[str, Any]],
                       addresses: Mapping[Any, list[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
        """``newsletter_subscriber`` rows of the chunk's customers and addresses: one lookup."""
        if not self._consent_from_newsletter():
            return []
        customer_ids = sorted({int(q["customer_id"]) for q in quotes if q["customer_id"]})
        emails = stored_forms(sorted({email for q in quotes for email in
                                      [normalize_email(q["customer_email"])]
                                      + [normalize_email(a["email"]) for a in addresses.get(q["quote_id"], [])]
                                      if email}))
        where, params, lists = any_in([
            ("customer_id", "customer_ids", customer_ids),
            (email_in(self.db.backend, "subscriber_email", emails=emails), "emails", emails),
        ])
        return self.db.fetch(
            "SELECT customer_id, subscriber_email, store_id, subscriber_status "
            f"FROM {self.t('newsletter_subscriber')} WHERE {where}", params, expanding=lists)

    @staticmethod
    def _consent(quote: Mapping[str, Any], email: str | None, subscriptions: list[Mapping[str, Any]]) -> bool | None:
        """Subscribed: yes; unsubscribed: no; otherwise unknown. The quote's store view first."""
        customer_id = quote["customer_id"] or None
        mine = [row for row in subscriptions
                if (customer_id is not None and row["customer_id"] == customer_id)
                or (email is not None and normalize_email(row["subscriber_email"]) == email)]
        same_store = [row for row in mine if row["store_id"] == quote["store_id"]] or mine
        statuses = {int(row["subscriber_status"] or 0) for row in same_store}
        if _UNSUBSCRIBED in statuses:
            return False
        return True if _SUBSCRIBED in statuses else None

    def _cart(self, quote: Mapping[str, Any], rows: list[Mapping[str, Any]], addresses: list[Mapping[str, Any]],
              stock: Mapping[Any, int | None], children: Mapping[Any, Mapping[str, Any]],
              subscriptions: list[Mapping[str, Any]]) -> Cart | None:
        quote_id = str(quote["quote_id"])
        try:
            by_type = {"billing": [], "shipping": []}  # type: dict[str, list[Mapping[str, Any]]]
            for address in addresses:
                by_type.setdefault(str(address["address_type"] or ""), []).append(address)
            ordered = by_type["billing"] + by_type["shipping"]
            currency = as_currency(quote["quote_currency_code"])
            rate = Decimal(1)
            if quote["base_currency_code"] and quote["base_currency_code"] != quote["quote_currency_code"] \
                    and quote["base_to_quote_rate"]:
                rate = as_decimal(quote["base_to_quote_rate"], "base_to_quote_rate") or Decimal(1)
            items: list[LineItem] = []
            row_totals: list[Any] = []
            for row in rows:
                if row["parent_item_id"] is not None:
                    continue  # the chosen simple product of a configurable, or a bundle part
                row_totals.append(row["row_total"])
                child = children.get(row["item_id"]) if row["product_type"] == "configurable" else None
                product = child["product_id"] if child is not None else row["product_id"]
                cost = as_cost(row["base_cost"], "base_cost")
                if not cost and child is not None:  # the configurable's own row rarely has a cost
                    cost = as_cost(child["base_cost"], "base_cost") or cost
                line = item(
                    row["sku"], row["name"], row["qty"], self._shown_price(row),
                    unit_cost=None if not cost else cost * rate,  # 0: no cost set (100 % margin, else)
                    stock=None if row["product_type"] == "bundle" else stock.get(product),
                )
                items.append(replace(line, unit_price=in_minor_units(line.unit_price, currency)))
            # No line left (items_count says otherwise): an empty cart, which the pipeline skips.
            email = as_email(quote["customer_email"], *(a["email"] for a in ordered))
            phone = next((text_or_none(a["telephone"]) for a in ordered if text_or_none(a["telephone"])), None)
            customer_id = id_or_none(quote["customer_id"])
            customer = Customer(
                email=email,
                id=customer_id,
                phone=phone,
                first_name=text_or_none(quote["customer_firstname"])
                or next((text_or_none(a["firstname"]) for a in ordered if text_or_none(a["firstname"])), None),
                last_name=text_or_none(quote["customer_lastname"])
                or next((text_or_none(a["lastname"]) for a in ordered if text_or_none(a["lastname"])), None),
                locale=self._locale(quote["store_id"]),
                is_guest=bool(quote["customer_is_guest"]) or customer_id is None,
                marketing_consent=self._consent(quote, email, subscriptions),
            )
            total = _shown(as_decimal(quote["grand_total"], "grand_total", required=False), currency)
            if items and _stale(quote, len(items), _sum_or_none(row_totals)):
                # The lines it has are what the customer would buy; its totals still count what is gone.
                total = sum((line.line_total for line in items), Decimal("0"))
                quote = dict(quote, base_grand_total=None)  # the base total follows, by the quote's rate
            base_total = self._base_total(quote, currency, total)
            created = as_utc(quote["created_at"], UTC, "created_at")
            updated = _last_activity(quote, as_utc(quote["updated_at"], UTC, "updated_at"))
            refuse_unkeepable_owner(self.name, quote_id, customer)
        except RowError as exc:
            self.problem(f"{self.db.prefix}quote entity_id={quote_id}", str(exc), cart_id=quote_id)
            return None
        return Cart(
            id=quote_id,
            source=self.name,
            customer=customer,
            currency=currency,
            items=tuple(items),
            total=total if total is not None else sum((line.line_total for line in items), Decimal("0")),
            created_at=created,
            updated_at=updated,
            recovery_url=self.recovery_url(quote_id),
            store_id=text_or_none(quote["store_id"]),
            base_total=base_total,
        )

    def _base_total(self, quote: Mapping[str, Any], currency: str, total: Decimal | None) -> Decimal | None:
        """The total in the base currency: ``base_grand_total``; when it is missing (or 0 beside
        a total), ``grand_total / base_to_quote_rate``; None when neither can tell."""
        base_code = text_or_none(quote["base_currency_code"]) or currency
        base = as_decimal(quote["base_grand_total"], "base_grand_total", required=False)
        if base is None or (not base and total):
            rate = as_decimal(quote["base_to_quote_rate"], "base_to_quote_rate", required=False)
            if total is not None and rate and rate > 0:
                base = total / rate
            elif base_code == currency:
                base = total
            else:
                base = None
        return self.base_amount(_shown(base, base_code), base_code)

    def _locale(self, store_id: Any) -> str | None:
        locales = self.options.get("store_locales") or {}
        value = locales.get(str(store_id), locales.get(store_id)) if store_id is not None else None
        return as_locale(value)  # written as a template folder is named: SV-se is sv_SE

    def activity(self, window: Window) -> Iterator[Activity]:
        """Address (without one, the phone number of its billing or shipping address, as
        :meth:`_cart` takes them), last activity and key of each quote in the window, whether it
        has a line left (one indexed look each: a quote whose ``items_count`` counts none is not
        read at all) and whether its totals leave nothing to pay. A quote whose time cannot be
        read is left out (the carts pass reports it).

        Only a cart that can be reminded competes for its address's newest, and this pass does
        not read a quote's lines: a newer quote that the carts pass could not build (a line's
        quantity, an unknown currency) was the newest, and its customer's older quote, which
        reads, got no reminder either. So a quote that may displace another, one of an address
        (without one, a number) met before in this pass (oldest first), is built as the carts
        pass builds it, and left out when it cannot be (:meth:`_readable`); most addresses have
        one quote, and theirs are not."""
        with _Met() as met:
            for batch in _by_time(self._cheap_activity(window), self.chunk_size):
                again = met.again([_met_key(activity) for activity, _ in batch])
                doubtful = [quote_id for activity, quote_id in batch if _met_key(activity) in again]
                readable = self._readable(doubtful) if doubtful else set()
                for activity, quote_id in batch:
                    if _met_key(activity) not in again or str(quote_id) in readable:
                        yield activity

    def _cheap_activity(self, window: Window) -> Iterator[tuple[Activity, Any]]:
        """Each quote's activity as one query reads it, oldest first, with its ``entity_id``."""
        sql = (
            "SELECT q.entity_id AS quote_id, q.updated_at, q.customer_email, a.email AS address_email, "
            "a.telephone AS address_phone, "
            "q.quote_currency_code, q.base_currency_code, q.base_to_quote_rate, q.grand_total, "
            f"q.base_grand_total, q.trigger_recollect, q.items_count, q.subtotal, {self._touched()}, "
            f"(SELECT COUNT(*) FROM {self.t('quote_item')} i WHERE i.quote_id = q.entity_id "
            "AND i.parent_item_id IS NULL) AS line_count, "
            f"(SELECT SUM(i.row_total) FROM {self.t('quote_item')} i WHERE i.quote_id = q.entity_id "
            "AND i.parent_item_id IS NULL) AS line_row_total "
            f"FROM {self.t('quote')} q LEFT JOIN {self.t('quote_address')} a "
            "ON a.quote_id = q.entity_id AND (a.email IS NOT NULL OR a.telephone IS NOT NULL) "
            f"WHERE {self._filters()} ORDER BY q.updated_at, q.entity_id, a.address_type, a.address_id"
        )
        for rows in grouped(self.db.stream(sql, self._window(window)), "quote_id"):
            # The address the cart gets (as_email, as _cart chooses it): "n/a" in customer_email
            # with the address on the billing address had filed the quote under "n/a".
            try:
                email = as_email(rows[0]["customer_email"], *(row["address_email"] for row in rows))
                updated = _last_activity(rows[0], as_utc(rows[0]["updated_at"], UTC, "updated_at"))
            except RowError:
                continue
            if updated not in window:  # flagged long after it was left (_last_activity): no cart of the window
                continue
            # Without an address, the customer is known by the number (billing first, as _cart).
            phone = "" if email else next(filter(None, (text_or_none(row["address_phone"]) for row in rows)), "")
            if not (email or phone):
                continue
            quote = rows[0]
            lines = int(quote["line_count"] or 0)
            yield Activity(email or "", updated, f"{self.name}:{quote['quote_id']}", not lines,
                           self._nothing_to_pay(quote, lines, _sum_or_none([quote["line_row_total"]])),
                           phone=phone), quote["quote_id"]

    def _readable(self, quote_ids: list[Any]) -> set[str]:
        """The ids of those of ``quote_ids`` that the carts pass can build (its problems are the
        carts pass's to report)."""
        readable: set[str] = set()
        saved, self.on_problem = self.on_problem, ignore_problem
        try:
            for chunk in chunks(quote_ids, self.chunk_size):
                rows = self.db.fetch(self._select("q.entity_id IN :ids"), {"ids": chunk}, expanding=("ids",))
                readable.update(cart.id for cart in self._build_chunk(rows, first_pass=True))
        finally:
            self.on_problem = saved
        return readable

    def _nothing_to_pay(self, quote: Mapping[str, Any], lines: int, row_total: Decimal | None) -> bool:
        """Whether the quote's grand total is 0 or less, and so its base total as :meth:`_cart`
        values it. A quote whose totals are stale (:func:`_stale`) is valued by its lines, which
        this pass does not read, and a total that cannot be read is something to pay: neither is
        free."""
        if _stale(quote, lines, row_total):
            return False
        try:
            total = _shown(as_decimal(quote["grand_total"], "grand_total", required=False),
                           as_currency(quote["quote_currency_code"]))
            if total is None or total > 0:
                return False
            base = self._base_total(quote, as_currency(quote["quote_currency_code"]), total)
        except RowError:
            return False
        return base is None or base <= 0

    # -- orders ------------------------------------------------------------------------------

    def orders_for(self, carts: Sequence[Cart]) -> Iterator[Order]:
        if not carts:
            return
        self.schema()
        quote_ids = sorted({int(cart.id) for cart in carts if ascii_digits(cart.id)})
        emails = cart_emails(carts)
        customer_ids = sorted({int(c.customer.id) for c in carts if c.customer.id and ascii_digits(c.customer.id)})
        # A quote without an address is its customer's by phone number: the orders whose billing
        # or shipping address has it (any quote of theirs: one left, another ordered from).
        tails = self.phone_tails(carts, "sales_order_address")
        addresses = self.t("sales_order_address")
        where, params, lists = any_in([("quote_id", "quote_ids", quote_ids),
                                       (email_in(self.db.backend, "customer_email", emails=emails), "emails", emails),
                                       ("customer_id", "customer_ids", customer_ids),
                                       (f"entity_id IN (SELECT parent_id FROM {addresses} WHERE "
                                        f"{phone_tail(self.db.backend, 'telephone')})", "tails", tails)])
        phone = self._order_telephone(bool(tails))
        sql = (
            "SELECT entity_id, increment_id, quote_id, customer_id, customer_email, state, status, "
            "grand_total, order_currency_code, base_grand_total, base_currency_code, created_at, total_refunded, "
            f"{phone} AS telephone FROM {self.t('sales_order')} o WHERE {where}"
        )
        for row in self.db.fetch(sql, params, expanding=lists):
            order = self._order(row, keep=True, phone=self.order_phone(row["telephone"]))
            if order is not None:
                yield order

    def _order_telephone(self, wanted: bool) -> str:
        """SQL: the number of the order ``o`` (a ``sales_order``), as a quote's (:meth:`_cart`)."""
        return self.address_phone(wanted, "sales_order_address", "telephone", "parent_id", "entity_id", "entity_id")

    def _order(self, row: Mapping[str, Any], keep: bool = False, refunds: bool = False,
               phone: str | None = None) -> Order | None:
        """A ``sales_order`` row as an order; ``None`` when it is not one. An unreadable row is
        reported, and with ``keep`` (the orders of carts) kept as unreadable, its ids as given.
        Its credit memos' sum ``total_refunded`` is read: a run's order refunded in full by amount
        (a credit memo's adjustment refund, no item returned, leaves it ``processing``, as items
        are still to ship) awaits no delivery (:attr:`Order.awaits_delivery`); a ``closed`` one
        (refunded) is still the purchase of its cart, and awaits no delivery either. With
        ``refunds`` (the report's rows) ``base_total_refunded`` is read too, and an order refunded in
        full, ``closed`` or not yet, is no order."""
        state = (text_or_none(row["state"]) or text_or_none(row["status"]) or "").lower()
        status = _STATE_STATUS.get(state, state)
        if status in (IGNORED_ORDER_STATUSES if refunds else RUN_IGNORED_ORDER_STATUSES):
            return None
        try:
            created, day_start = order_time(row["created_at"], UTC, "created_at")
            total = as_decimal(row["grand_total"], "grand_total", required=False) or Decimal("0")
            base_code = text_or_none(row["base_currency_code"]) or text_or_none(row["order_currency_code"])
            refunded = self.refund(row["total_refunded"], "total_refunded", self._where(row), refunds)
            base_refunded = None
            if refunds:
                if refunded_whole(total, refunded):
                    return None
                if row["base_total_refunded"] is not None:
                    base_refunded = self.base_amount(as_refund(row["base_total_refunded"], "base_total_refunded"),
                                                     base_code)
            return Order(
                id=text_or_none(row["increment_id"]) or str(row["entity_id"]),
                created_at=created,
                day_start=day_start,
                email=order_email(row["customer_email"]),
                customer_id=id_or_none(row["customer_id"]),
                cart_id=id_or_none(row["quote_id"]),
                total=total,
                currency=text_or_none(row["order_currency_code"]),
                status=status,
                delivered=state in _DELIVERED_STATES,
                base_total=self.base_amount(as_decimal(row["base_grand_total"], "base_grand_total", required=False),
                                            base_code),
                refunded=refunded,
                base_refunded=base_refunded,
                discount_codes=codes_of(row["coupon_code"]) if refunds else (),
                phone=phone,
            )
        except RowError as exc:
            where = self._where(row)
            self.problem(where, str(exc))
            if not keep:
                return None
            return Order.unreadable_row(text_or_none(row["increment_id"]) or str(row["entity_id"]), where,
                                        row["customer_email"], row["customer_id"], row["quote_id"], phone)

    def _where(self, row: Mapping[str, Any]) -> str:
        """Where a ``sales_order`` row's problems are reported."""
        return f"{self.db.prefix}sales_order entity_id={row['entity_id']}"

    # -- newsletter sends ----------------------------------------------------------------------

    _NEWSLETTER_TABLES = ("newsletter_subscriber", "newsletter_queue_link", "newsletter_queue")

    def sends_for(self, emails: Sequence[str], window: Window) -> Iterator[MarketingSend]:
        """Letters of the core newsletter queue sent to ``emails`` within ``window``."""
        if not emails or not self._has_tables(self._NEWSLETTER_TABLES, "the core newsletter queue"):
            return
        forms = stored_forms(emails)
        sql = (
            "SELECT s.subscriber_email, l.letter_sent_at, q.newsletter_subject "
            f"FROM {self.t('newsletter_subscriber')} s "
            f"JOIN {self.t('newsletter_queue_link')} l ON l.subscriber_id = s.subscriber_id "
            f"LEFT JOIN {self.t('newsletter_queue')} q ON q.queue_id = l.queue_id "
            f"WHERE {email_in(self.db.backend, 's.subscriber_email', 'IN :emails', emails=forms)} AND l.letter_sent_at >= :start AND l.letter_sent_at <= :end"
        )
        params = {"emails": forms, "start": local_bound(window.start, UTC), "end": local_bound(window.end, UTC)}
        for row in self.db.fetch(sql, params, expanding=("emails",)):
            email = normalize_email(row["subscriber_email"])
            if email:
                yield MarketingSend(email, as_utc(row["letter_sent_at"], UTC, "letter_sent_at"),
                                    campaign_name(row["newsletter_subject"]))

    # -- orders by time (report) -------------------------------------------------------------

    def orders(self, window: Window, wanted: OrderFilter | None = None) -> Iterator[Order]:
        """The orders placed in ``window`` (``sales_order.created_at``, indexed), streamed, with
        what their credit memos refunded (revenue is net of it) and the coupon they used
        (``coupon_code``): without it the report took every attributed order after an incentive
        step for a redemption of its code, an order with another promotion's coupon too. Of the
        store views read only (``store_ids``): another's orders are its own config's report's."""
        sql = (
            "SELECT entity_id, increment_id, quote_id, customer_id, customer_email, state, status, grand_total, "
            "order_currency_code, base_grand_total, base_currency_code, created_at, total_refunded, "
            f"base_total_refunded, coupon_code, {self._order_telephone(reads_phones(wanted))} AS telephone "
            f"FROM {self.t('sales_order')} o "
            f"WHERE created_at >= :start AND created_at <= :end{self._of_stores('store_id')} "
            "ORDER BY created_at, entity_id"
        )
        self._codes_read = True  # every order's coupon_code: NULL is no coupon used
        for row in self.db.stream(sql, self.window_bounds("sales_order", "created_at", window, UTC)):
            if wanted is None or order_wanted(wanted, row["quote_id"], row["customer_email"], row["customer_id"],
                                              row["telephone"]):
                order = self._order(row, refunds=True, phone=self.order_phone(row["telephone"]))
                if order is not None:
                    yield order


def _shown(amount: Decimal | None, currency: str) -> Decimal | None:
    """A stored amount (Magento keeps 4 decimals: ``60.0000``) in ``currency``'s digits, half up
    as Magento displays it (:func:`~cartrescue.currency.in_minor_units`): ``60.00`` € and
    ``1500`` ¥, as the other presets give a cart's amounts."""
    return None if amount is None else in_minor_units(amount, currency)


def _last_activity(quote: Mapping[str, Any], updated: datetime) -> datetime:
    """The customer's last activity on the quote: its ``updated_at``, unless Magento flagged it
    for recollection. Applying catalog price rules (on a rule's save, and nightly by cron) runs
    ``UPDATE quote SET trigger_recollect = 1`` over every quote holding a product with a rule
    price, and ``updated_at``'s ``ON UPDATE CURRENT_TIMESTAMP`` makes that "now": a cart left 20
    days ago looked left an hour ago. The flag says the customer has not been back since (loading
    the quote recollects it and clears the flag), so such a quote is as old as the latest change
    of its lines and addresses (their own ``updated_at``, which that update leaves alone), never
    newer than its ``updated_at``. One that cannot be read (a zero date) tells nothing."""
    if not quote["trigger_recollect"]:
        return updated
    touched = []
    for column in ("lines_updated_at", "addresses_updated_at"):
        try:
            touched.append(as_utc(quote[column], UTC, column))
        except RowError:  # NULL (no address) or unreadable
            continue
    return min(updated, max(touched)) if touched else updated


def _stale(quote: Mapping[str, Any], lines: int, row_total: Decimal | None) -> bool:
    """Do the quote's stored totals still count a line it no longer has? Magento recalculates a
    quote only when its customer comes back. Until then, one flagged for it
    (``trigger_recollect``: a product disabled or deleted since), one with fewer lines than its
    ``items_count`` (a deleted product's lines removed without the flag, as Magento's
    ``QuoteItemsCleaner`` and the catalogue's foreign key do), or one whose ``subtotal`` is more
    than its lines' ``row_total`` (``items_count`` taken down with the line, as
    ``subtractProductFromQuotes`` does, the totals left as they were) keeps the totals of lines
    that are gone. ``row_total`` is the sum of the lines' (None: unknown)."""
    if bool(quote["trigger_recollect"]) or lines < int(quote["items_count"] or 0):
        return True
    subtotal = _sum_or_none([quote["subtotal"]])
    return subtotal is not None and row_total is not None and subtotal > row_total


def _sum_or_none(values: Sequence[Any]) -> Decimal | None:
    """The sum of stored amounts, or None when one is missing or unreadable: these amounts only
    tell whether a quote's totals are stale, and a doubtful one must not cost the cart."""
    total = Decimal("0")
    for value in values:
        try:
            amount = as_decimal(value, "amount", required=False)
        except RowError:
            return None
        if amount is None:
            return None
        total += amount
    return total


def _by_time(activity: Iterable[tuple[Activity, Any]], size: int) -> Iterator[list[tuple[Activity, Any]]]:
    """``activity`` (oldest first) in batches of about ``size``, each cut where the time changes:
    quotes of one address touched in the same second are then in one batch, each displacing
    the other (the newest-cart index breaks such a tie by key, which the query's order is not)."""
    batch: list[tuple[Activity, Any]] = []
    for entry in activity:
        if len(batch) >= size and entry[0].updated_at != batch[-1][0].updated_at:
            yield batch
            batch = []
        batch.append(entry)
    if batch:
        yield batch


def _met_key(activity: Activity) -> str:
    """Whose quotes may displace one another (:meth:`MagentoSource.activity`): the address, else
    the number as given (two spellings of one number are both built: a check too many, never
    one too few)."""
    return activity.email or f"tel:{activity.phone}"


class _Met:
    """The addresses a pass has met, in a scratch SQLite file (:mod:`cartrescue.scratch`): a
    week of a big shop's quotes costs no more memory than a few."""

    def __init__(self) -> None:
        self._scratch = ScratchDb("met", "CREATE TABLE met(email TEXT PRIMARY KEY) WITHOUT ROWID;")
        self._db = self._scratch.connection

    def again(self, emails: Sequence[str]) -> set[str]:
        """Those of one batch's ``emails`` met in an earlier batch or twice in this one; then
        all are met."""
        again = {email for email, times in Counter(emails).items() if times > 1}
        unique = list(set(emails))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            again.update(row[0] for row in self._db.execute(f"SELECT email FROM met WHERE email IN ({marks})", chunk))
        self._db.executemany("INSERT OR IGNORE INTO met(email) VALUES (?)", ((email,) for email in unique))
        return again

    def __enter__(self) -> "_Met":
        return self

    def __exit__(self, *exc: object) -> None:
        self._scratch.close()
