"""The ``source`` section: where carts and orders come from (CSV exports or a shop database),
with the per-type ``options`` of the database sources.

Apart because it is the largest section, and the only one that knows the source types.
"""

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cartrescue.config.types import (
    database_url,
    Duration,
    a_statement_wait,
    above_zero_for,
    currency_code,
    iana_zone,
    Model,
)
from cartrescue.drivers import SOURCE_STATEMENT_WAIT

SourceType = Literal["csv", "shopify_csv", "sql", "magento2", "woocommerce", "prestashop"]


def _one_character(value: str | None) -> str | None:
    if value is not None and len(value) != 1:
        raise ValueError("expected one character, such as ',' or ';'")
    return value


def _known_encoding(value: str) -> str:
    import codecs

    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r} (e.g. utf-8-sig, cp1252, latin-1)") from None
    return value


#: The longest name a source's carts have in the ledger (``name:id``, :data:`KeyPrefix`): a
#: cart's key is kept in 191 characters, and its id needs the rest.
KEY_NAME_LENGTH = 30


def _key_prefix(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(rf"[a-z0-9_]{{1,{KEY_NAME_LENGTH}}}", value):
        raise ValueError(f"expected lower-case letters, digits or _ (as in a cart key 'csv:1042'), got {value!r}")
    return value


Delimiter = Annotated[str | None, AfterValidator(_one_character)]


Encoding = Annotated[str, AfterValidator(_known_encoding)]


KeyPrefix = Annotated[str | None, AfterValidator(_key_prefix)]


class NewslettersConfig(Model):
    """The shop's other marketing sends (its newsletter): a reminder due on a day the address got
    one waits for the next day (reason ``newsletter_today``). See docs/newsletters.md."""

    # Database presets: also read the shop's own newsletter tables (magento2: the core newsletter
    # queue; woocommerce: MailPoet's statistics when installed; sql: queries.newsletters).
    shop_database: bool = True
    file: Path | None = None  # a CSV export of sends: email, sent_at, campaign (relative to the config file)
    columns: dict[str, str] = Field(default_factory=dict)  # email / sent_at / campaign -> this export's header
    delimiter: Delimiter = None  # None: detected from the header line
    encoding: Encoding = "utf-8-sig"

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(columns) - {"email", "sent_at", "campaign"})
        if unknown:
            raise ValueError(f"unknown column {unknown[0]!r} (map email, sent_at and campaign to this export's headers)")
        return columns


#: WooCommerce's order storage: HPOS ``wc_orders``, legacy ``posts``, or whichever the shop uses.
def _one_or_many(value: Any) -> Any:
    """A single value where a list is expected is a list of one (``statuses: abandoned``: the
    string became a list of its letters, and every cart was dropped without a word)."""
    return [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value


class _Options(BaseModel):
    """``source.options`` of a database source: known keys with their types, so a misspelt key
    (``shop_id`` for ``shop_ids``: another shop's carts were reminded) or ``"false"`` read as true
    (``gdpr_consent``, from a ``${VAR}``) is a config error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timezone: str | None = None
    recovery_url: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        """Checked when the config loads, as ``shop.timezone``: a typo was found only once the
        source opened, and not by ``doctor``'s config check."""
        return iana_zone(value) if value is not None else None


class _WooCommerceOptions(_Options):
    orders_table: Literal["auto", "hpos", "legacy"] = "auto"
    gdpr_consent: bool = True
    line_prices_include_tax: bool = False
    statuses: Annotated[list[str], BeforeValidator(_one_or_many)] = ["normal", "abandoned", "lost"]
    cost_meta_keys: Annotated[list[str] | None, BeforeValidator(_one_or_many)] = None
    cost_meta_key: str | None = None
    currency: str | None = None
    users_prefix: str | None = None  # a multisite subsite: the network's prefix of wp_users (wp_)

    @field_validator("users_prefix")
    @classmethod
    def _table_prefix(cls, value: str | None) -> str | None:
        """As ``source.prefix``: it goes into the SQL text as part of a table's name."""
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_]*", value):
            raise ValueError(f"only letters, digits and _ are allowed, got {value!r}")
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str | None) -> str | None:
        """A typo (``EUO``) stopped every run as a shop-side error (exit 3) blaming the shop's
        woocommerce_currency setting, and telling the user to set the option they had set."""
        return currency_code(value, f"expected an ISO 4217 code like EUR, got {value!r}") if value else None


class _MagentoOptions(_Options):
    consent: Literal["newsletter", "none"] = "newsletter"
    line_prices_include_tax: bool = False
    stock_id: int = 1
    store_locales: dict[int | str, str] = Field(default_factory=dict)  # {store_id: locale}
    store_ids: Annotated[list[int] | None, BeforeValidator(_one_or_many)] = None  # None: every store view


class _PrestaShopOptions(_Options):
    shop_ids: Annotated[list[int] | None, BeforeValidator(_one_or_many)] = None
    cookie_key: str | None = None


class _SqlOptions(_Options):
    name: str = "sql"
    db_timezone: str = "UTC"

    @field_validator("name")
    @classmethod
    def _key_name(cls, value: str) -> str:
        """The name of its carts in the ledger (``name:id``), as ``source.key_prefix`` is: a long
        one left the ids no room in the key's column, and every cart of the source was refused."""
        if len(value) > KEY_NAME_LENGTH:
            raise ValueError(f"{len(value)} characters, more than a source's name in the ledger's cart keys "
                             f"(name:id) may have ({KEY_NAME_LENGTH}, as source.key_prefix)")
        return value

    @field_validator("db_timezone")
    @classmethod
    def _known_zone_or_shop(cls, value: str) -> str:
        return value if value == "shop" else iana_zone(value)


_OPTIONS: dict[str, type[_Options]] = {"woocommerce": _WooCommerceOptions, "magento2": _MagentoOptions,
                                       "prestashop": _PrestaShopOptions, "sql": _SqlOptions}


def _checked_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of a ``kind`` source read by its model (``"false"`` is False, ``shop_ids: 1``
    is ``[1]``), keeping only the keys given; a ValueError naming the first bad key."""
    model = _OPTIONS.get(kind)
    if model is None or not options:
        return options
    known = [name for name in model.model_fields]
    for key in options:
        if key not in known:
            from difflib import get_close_matches

            close = get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ValueError(f"options.{key}: not an option of a {kind} source ({hint}its options: {', '.join(known)})")
    try:
        read = model.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0])
        if error["type"] == "value_error":  # its message quotes the value
            raise ValueError(f"options.{key}: {error['msg'].removeprefix('Value error, ')}") from None
        raise ValueError(f"options.{key}: {error['msg']}, got {options.get(key)!r}") from None
    return read.model_dump(include=set(options))


class SourceConfig(Model):
    """Where carts and orders come from. CSV paths are relative to the config file."""

    type: SourceType = "csv"
    # CSV sources
    carts: Path | None = None
    orders: Path | None = None
    delimiter: Delimiter = None  # None: detected from the header line
    encoding: Encoding = "utf-8-sig"
    # The orders export's, where it is saved otherwise than the carts' (Excel's cp1252 beside a
    # UTF-8 carts export); None: the carts' encoding (``encoding``)
    orders_encoding: Encoding | None = None
    columns: dict[str, str] = Field(default_factory=dict)  # generic name -> this export's header
    order_columns: dict[str, str] = Field(default_factory=dict)
    # database sources
    url: str | None = None
    prefix: str | None = None
    queries: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    newsletters: NewslettersConfig = NewslettersConfig()
    # A CSV export (carts, orders, newsletter sends) not written for this long: delivering runs hold
    # back (exit 3), doctor fails (exit 5); null: not checked (cartrescue.sources.freshness)
    # 0 (many tools' "off") made every export stale a second after it was written: refused.
    export_stale_after: Annotated[Duration | None, above_zero_for(
        "every export would be stale at once, and every sending run held back: null switches the check off"
    )] = timedelta(days=1)
    # What the ledger calls this source's carts (``prefix:id``); default the type's own name
    # (csv, shopify, magento2 ...). Set it to keep the keys of a source the shop used before.
    key_prefix: KeyPrefix = None
    # A statement on a PostgreSQL or MySQL/MariaDB shop database that goes this long without an
    # answer (a proxy whose backend is gone) stops the command, exit 3 (cartrescue.drivers.Silence).
    statement_wait: Duration = timedelta(seconds=SOURCE_STATEMENT_WAIT)

    @property
    def is_csv(self) -> bool:
        """Files exported by the shop (the generic CSV or Shopify's), not a database read live."""
        return self.type in ("csv", "shopify_csv")

    @field_validator("columns", "order_columns")
    @classmethod
    def _generic_names(cls, columns: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        """Each key a generic column name: a misspelt one (``emial``) mapped nothing, so the
        orders' addresses were blank and their buyers reminded, without a word."""
        if not columns:
            return columns
        from difflib import get_close_matches

        from cartrescue.sources.csv import CART_FIELDS, LINE_FIELDS, ORDER_FIELDS, REPORT_ORDER_FIELDS

        names = CART_FIELDS + LINE_FIELDS if info.field_name == "columns" else ORDER_FIELDS + REPORT_ORDER_FIELDS
        for key in columns:
            if key not in names:
                close = get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ValueError(f"unknown column {key!r} ({hint}the keys are the generic names of docs/csv-format.md: "
                                 f"{', '.join(names)}; the values are this export's headers)")
        return columns

    @field_validator("statement_wait")
    @classmethod
    def _some_wait(cls, value: timedelta) -> timedelta:
        return a_statement_wait(value)

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        """A URL's shape, when the config loads (exit 2, naming the key): ``not-a-url`` was
        found only by the run, as a shop-side error (exit 3)."""
        return value and database_url(value, "expected an SQLAlchemy database URL like postgresql://user@host/shop "
                                             "or mysql+pymysql://user:password@host/shop")

    @model_validator(mode="after")
    def _fields_for_type(self) -> "SourceConfig":
        object.__setattr__(self, "options", _checked_options(self.type, self.options))  # frozen: set once, here
        if self.is_csv:
            if self.carts is None:
                raise ValueError(f"a {self.type} source needs 'carts' (path to the carts CSV)")
            # A database source's keys under a file source: left from a switch, or a type forgotten.
            stray = [key for key in ("url", "prefix", "queries", "options") if getattr(self, key)]
            if stray:
                raise ValueError(f"{', '.join(stray)}: for a database source, not a {self.type} one (which reads "
                                 "the carts and orders files): set type, or remove them")
        elif not self.url:
            raise ValueError(f"a {self.type} source needs 'url' (an SQLAlchemy database URL)")
        if self.type == "sql" and "carts" not in self.queries:
            raise ValueError("a sql source needs queries.carts")
        return self
