"""Cart sources: one module per kind of shop data, all implementing :class:`CartSource`.

:func:`open_source` picks the implementation named by ``source.type`` in the config and imports
it lazily, so a CSV user never loads database drivers. :func:`open_sends` lists the readers of
the shop's other marketing sends (``source.newsletters``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cartrescue.config import Config
from cartrescue.errors import SourceError

if TYPE_CHECKING:  # .base (and the domain model) only once a source is opened: see open_source
    from cartrescue.sources.base import CartSource, ProblemSink, SendSource
    from cartrescue.sources.csv import CsvSource

DATABASE_TYPES = {
    "sql": ("cartrescue.sources.sql", "SqlSource"),
    "magento2": ("cartrescue.sources.magento", "MagentoSource"),
    "woocommerce": ("cartrescue.sources.woocommerce", "WooCommerceSource"),
    "prestashop": ("cartrescue.sources.prestashop", "PrestaShopSource"),
}


def key_name(config: Config) -> str:
    """What the configured source calls its carts in the ledger (``name:id``), without opening
    it: ``source.key_prefix``, else the type's own name (``options.name`` of a ``sql`` source)."""
    source = config.source
    if source.key_prefix:
        return source.key_prefix
    if source.is_csv:
        return "shopify" if source.type == "shopify_csv" else "csv"
    if source.type == "sql":
        return str(source.options.get("name", "sql"))
    return source.type


def source_identity(config: Config) -> str:
    """Which carts the configured source reads, as a short digest: equal for two configs whose
    runs would remind the same customers of the same carts, each from its own ledger.

    ``run-all`` refuses the second of them in one round (:func:`cartrescue.batch.take_in_round`):
    an agency's copied shop folder (``shops/acme`` to ``shops/acme-test``) sent every step twice.
    A CSV source is its carts file (the real path); a database source the server, database and
    URL options (a search_path; :func:`_database_identity`), its ``prefix``, ``queries`` and ``options``: shops that share a
    database under other prefixes or schemas are other shops. Never who logs in, nor a secret: a
    digest, printed without revealing the URL."""
    import hashlib
    import json
    import os

    source = config.source
    if source.is_csv:
        assert source.carts is not None  # validated by the config
        parts: list[object] = ["csv", os.path.realpath(config.path(source.carts))]
    else:
        parts = [source.type, _database_identity(config.source_url or ""), source.prefix, source.queries,
                 source.options]
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


#: The port a URL that names none connects to, per server: ``db:3306`` and ``db`` are one server.
_DEFAULT_PORTS = {"mysql": 3306, "postgresql": 5432, "mssql": 1433, "oracle": 1521}


def _database_identity(url: str) -> object:
    """Which database ``url`` opens, as :func:`source_identity` compares it: a SQLite file by its
    real path (``acme/../exports/shop.db`` and ``acme-test/../exports/shop.db`` are one file, as
    a CSV source's carts file is compared), a server by its dialect (MariaDB's is MySQL's), its
    host in lower case, its port (the default where the URL names none) and its database."""
    from sqlalchemy.engine import make_url

    from cartrescue.sqlite_url import sqlite_file

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - the run reports a URL it cannot parse; the text stands in
        return url
    query = sorted((key, str(value)) for key, value in parsed.query.items())
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = sqlite_file(parsed)
        return ["sqlite", str(path) if path is not None else parsed.database, query]
    backend = "mysql" if backend == "mariadb" else backend
    host = (parsed.host or "").lower() or None
    return [backend, host, parsed.port or _DEFAULT_PORTS.get(backend), parsed.database, query]


def open_source(config: Config, on_problem: ProblemSink | None = None, shared_orders: Path | None = None,
                shared_carts: Path | None = None, limit: float | None = None) -> CartSource:
    """The configured source, ready to stream; raise SourceError when it cannot be opened.
    ``on_problem``: where its unreadable rows go (None: nowhere); ``shared_orders``: a worker's
    run's orders index; ``shared_carts``: where its run splits the carts file (a CSV source's;
    :mod:`.shared`). ``limit``: ``doctor --timeout``, which bounds each statement on a shop's
    database below ``source.statement_wait`` (:func:`cartrescue.drivers.within`).

    :mod:`.base` and the domain model are imported here, not with this package: the parent of
    ``run --workers`` imports the package (for :mod:`.shared`) before it forks its first helper,
    alone on its core until then, and imports them after (see ``commands.run``)."""
    from cartrescue.sources.base import ignore_problem

    if on_problem is None:
        on_problem = ignore_problem
    source = config.source
    tz = config.shop.tz
    if source.is_csv:
        assert source.carts is not None  # validated by the config
        return csv_source(config, config.path(source.carts), on_problem,
                          orders=config.path(source.orders) if source.orders else None,
                          shared_orders=shared_orders, shared_carts=shared_carts)
    import importlib

    from cartrescue.sqlite_url import sqlite_file

    url = config.source_url
    missing = sqlite_file(url)
    if missing is not None and not missing.exists():
        raise SourceError(f"{source.type} source: {config.where('source.url')}: the SQLite file {missing} does not "
                          "exist (a shop's database is only read, never created: is the path mistyped?)")
    module_name, class_name = DATABASE_TYPES[source.type]
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    opened = cls.from_config(source.model_copy(update={"url": url}), shop_tz=tz, on_problem=on_problem,
                             base_currency=config.shop.currency, region=config.phone_region)
    opened.name = key_name(config)  # the type's own name, or source.key_prefix
    from cartrescue.drivers import within

    seconds, key = within(source.statement_wait.total_seconds(), "source.statement_wait", limit)
    opened.db.wait_for(seconds, config.where("source.url"), key, limit)
    return opened  # type: ignore[no-any-return]


def csv_source(config: Config, carts: Path, on_problem: ProblemSink, *, orders: Path | None = None,
               carts_key: str | None = None, shared_orders: Path | None = None,
               shared_carts: Path | None = None) -> CsvSource:
    """The CSV export ``carts`` (and ``orders``), read as the config's CSV source reads its own:
    its encodings, delimiter, column mapping (the Shopify preset's under ``shopify_csv``), shop
    timezone and phone region. ``templates check --carts FILE`` reads the shop's export so too:
    read as UTF-8 with the generic columns, a cp1252 export was told to set the encoding it had,
    and a Shopify export missed every column. ``carts_key``: what named ``carts`` in an error
    (default ``cartrescue.yaml: source.carts``); the rest as :func:`open_source`'s."""
    from cartrescue.sources.csv import CART_FIELDS, LINE_FIELDS, ORDER_FIELDS, CsvSource

    source = config.source
    columns, order_columns = dict(source.columns), dict(source.order_columns)
    # The fields a user mapped must be in the file (a typo would blank them silently), and
    # the consent a preset maps, without which every cart would be a no_consent skip.
    expected = [name for name in columns if name in CART_FIELDS + LINE_FIELDS]
    expected_orders = [name for name in order_columns if name in ORDER_FIELDS]
    if source.type == "shopify_csv":
        expected = list(dict.fromkeys([*expected, "marketing_consent"]))
        from cartrescue.sources.shopify import CHECKOUT_COLUMNS, ORDER_COLUMNS

        columns = {**CHECKOUT_COLUMNS, **columns}
        order_columns = {**ORDER_COLUMNS, **order_columns}
    return CsvSource(
        carts,
        orders,
        shop_tz=config.shop.tz,
        columns=columns,
        order_columns=order_columns,
        delimiter=source.delimiter,
        encoding=source.encoding,
        orders_encoding=source.orders_encoding,
        name=key_name(config),
        on_problem=on_problem,
        shared_orders=shared_orders,
        shared_carts=shared_carts,
        expected=expected,
        expected_orders=expected_orders,
        carts_key=config.where("source.carts") if carts_key is None else carts_key,
        orders_key=config.where("source.orders"),
        region=config.phone_region,
    )


def open_sends(config: Config, source: CartSource, on_problem: ProblemSink | None = None,
               shared: Path | None = None) -> list[SendSource]:
    """The readers of the shop's newsletter sends: the database preset's own tables (unless
    ``source.newsletters.shop_database`` is off) and the CSV export of ``source.newsletters.file``
    (``shared``: a worker's run's index of it, :mod:`.shared`). The caller closes the CSV reader
    (it keeps a scratch index). ``on_problem``: as :func:`open_source`'s."""
    from cartrescue.sources.base import ignore_problem

    if on_problem is None:
        on_problem = ignore_problem
    newsletters = config.source.newsletters
    readers: list[SendSource] = []
    if newsletters.shop_database and config.source.type in DATABASE_TYPES:
        readers.append(source)
    if newsletters.file is not None:
        from cartrescue.sources.sends_csv import open_export

        readers.append(open_export(config, on_problem, shared))
    return readers
