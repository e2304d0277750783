"""The ledger's column widths that the config and the sources check values against, written out
where they are checked, so that neither imports SQLAlchemy and the ledger's models (~0.3 s of CPU).

``run --workers N`` reads its config, then forks the helpers that split the export and build the
orders index, then imports what its workers need and forks them. Reading the config imported the
ledger's tables to learn how long a tier's name may be: a serial stretch before the first fork,
while the other core idled; and the helper splitting the export imported them again to check each
cart's values, which every worker waits for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cartrescue.config.root import LEDGER_WIDTHS
from cartrescue.ledger import cart_value_limits, config_value_limits
from cartrescue.sources.values import CART_WIDTHS
from conftest import REPO


def test_the_configs_widths_are_the_ledgers_narrowest_columns() -> None:
    assert LEDGER_WIDTHS == config_value_limits()


def test_a_carts_widths_are_the_ledgers_narrowest_columns() -> None:
    assert CART_WIDTHS == cart_value_limits()


def _imports_sqlalchemy(folder: Path, code: str) -> bool:
    config = folder / "cartrescue.yaml"
    (folder / "carts.csv").write_text("cart_id,email,currency,created_at,updated_at,sku,name,quantity,unit_price\n"
                                      "c1,a@example.com,EUR,2026-11-20T08:00:00Z,2026-11-20T08:00:00Z,S1,Socks,1,9.00\n",
                                      encoding="utf-8")
    config.write_text("source: {type: csv, carts: carts.csv}\nshop: {from_email: shop@example.com}\n",
                      encoding="utf-8")
    probe = (f"import sys; from cartrescue.config import load_config; config = load_config({str(config)!r}); "
             f"{code}; print('sqlalchemy' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return found.stdout.strip() == "True"


def test_a_config_is_read_without_the_ledgers_tables(tmp_path: Path) -> None:
    assert not _imports_sqlalchemy(tmp_path, "pass")


def test_the_export_is_split_without_the_ledgers_tables(tmp_path: Path) -> None:
    split = ("from cartrescue.sources import open_source; source = open_source(config).__enter__(); "
             f"source.publish_shards([__import__('pathlib').Path({str(tmp_path)!r}) / f's{{k}}' for k in (1, 2)])")
    assert not _imports_sqlalchemy(tmp_path, split)
