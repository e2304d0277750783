"""Shopify preset: header mappings for Shopify's CSV exports (data only, no code).

``source.type: shopify_csv`` reads the **abandoned checkouts export** (Orders > Abandoned
checkouts > Export) as carts and the **orders export** (Orders > Export) as orders, through the
generic CSV reader with these mappings (generic column name -> Shopify header). Generic columns
Shopify has no header for are left out, so the reader sees them as blank.

Both exports have the same layout: one row per **line item**; the order/checkout-level columns
(Financial Status, Accepts Marketing, Currency, Subtotal, Total, Created at, Billing ...) are
filled on the first row of each order only and blank on its other rows, while ``Name`` (the
``#1001`` reference) and usually ``Email`` are repeated on every row. ``Id`` is first-row only,
so ``Name`` is the grouping key.

Times are written as ``2026-11-20 10:03:00 +0100`` (``%Y-%m-%d %H:%M:%S %z``: a space instead
of the ``T``, a space before the offset, and no colon in the offset) - not strict ISO 8601.
Python 3.11's ``datetime.fromisoformat`` accepts it; other parsers may not.

Sources of the headers (see docs/shopify.md): the orders-export header as written in public
importers' test fixtures and sample exports (help.shopify.com's orders/abandoned-checkouts pages
describe the abandoned-checkouts export as working like the orders export). The abandoned
checkouts header could not be found verbatim; the checkout mapping below assumes the same
layout and names, which is what Shopify's help says.
"""

from __future__ import annotations

# Generic cart column -> header of the abandoned checkouts export.
CHECKOUT_COLUMNS: dict[str, str] = {
    "cart_id": "Name",                    # "#…" reference, repeated on every row ("Id" is first-row only)
    "email": "Email",
    "phone": "Billing Phone",             # free-form as typed by the buyer, not E.164
    "marketing_consent": "Accepts Marketing|Accepts Email Marketing",  # the older name, or the newer
    "full_name": "Billing Name|Shipping Name",  # "Anna Svensson": first name = the given name (csv.split_name)
    "sms_consent": "Accepts SMS Marketing",  # where the export has it (else blank: unknown)
    "currency": "Currency",
    "total": "Total",                     # incl. shipping and taxes, after discounts
    "created_at": "Created at",
    "sku": "Lineitem sku",
    "name": "Lineitem name",
    "quantity": "Lineitem quantity",
    "unit_price": "Lineitem price",       # price of ONE unit (Subtotal = sum of qty x price)
}

# Generic order column -> header of the orders export.
ORDER_COLUMNS: dict[str, str] = {
    "order_id": "Name",                   # "#1001", repeated on every line row; first row wins
    "email": "Email",
    "phone": "Billing Phone|Phone",       # as the checkouts' phone: a customer who gave no address is matched by it
    "total": "Total",
    "currency": "Currency",
    "status": "Financial Status",         # paid, pending, authorized, partially_paid, refunded, partially_refunded, voided
    "created_at": "Created at",
    "delivered": "Fulfillment Status",    # fulfilled -> delivered; unfulfilled, partial -> not yet
    "cancelled_at": "Cancelled at",       # non-blank = cancelled (its Financial Status may still say "paid")
    "discount_code": "Discount Code",     # read by `report` only (incentive redemption)
    "refunded": "Refunded Amount",        # read by `report` only: revenue is Total less it
}


# Values that need a conversion (or a caveat) before the generic reader can use them.
VALUE_NOTES: dict[str, str] = {
    "Created at": "'2026-11-20 10:03:00 +0100' (%Y-%m-%d %H:%M:%S %z): space separators, offset "
                  "without a colon; first row of each order only. Same format for Paid at, "
                  "Fulfilled at, Cancelled at.",
    "Accepts Marketing": "'yes' / 'no'; first row only.",
    "Lineitem quantity": "whole number >= 1, on every row.",
    "Lineitem price": "unit price, decimal point, no thousands separator (e.g. '1250.00'); "
                      "zero-decimal currencies may have no decimals.",
    "Total": "order/checkout total incl. shipping and taxes, minus discounts; first row only. "
             "'Subtotal' is the line items after discounts.",
    "Financial Status": "lower-case Shopify states; 'voided' and 'expired' are no order, 'refunded' no "
                        "sale to the report and still its cart's purchase to a run. A cancelled order is "
                        "recognised by 'Cancelled at', not by this column.",
    "Refunded Amount": "what was refunded so far, in the order's currency (0.00 when nothing); first "
                       "row only. The report counts Total less it; a partial refund leaves Financial "
                       "Status 'partially_refunded', a counted order.",
    "Fulfillment Status": "fulfilled / unfulfilled / partial / restocked -> delivered yes / no / no / "
                          "unknown (fulfilled = shipped, the closest Shopify has; csv.parse_delivered).",
    "Billing Name": "full name in one cell; first_name = text before the first space at best.",
    "Billing Phone": "as typed (e.g. '555-0100', '+33610826417'); may carry a leading apostrophe "
                     "added for spreadsheets, like 'Billing Zip' (\"'75008\").",
    "Name": "'#1001' style reference including the '#'.",
    "(missing)": "no Updated at (idle time counts from Created at), no customer id, no locale, no "
                 "device, no cost/stock/image/product URL, no recovery URL in the exports seen; "
                 "the orders export has no checkout/cart id, so 'ordered' is matched by email (a "
                 "checkout without one: by Billing Phone).",
}
