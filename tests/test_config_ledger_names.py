"""Names and values of the config that the ledger keeps fit its columns, or the file is refused.

A tier's or a sequence's name, a step's template, the shop (its name and sender) or the value of
a code pool's offer longer than the ledger's column was taken as it loaded: PostgreSQL refused it
at the first claim, so every run stopped there (exit 2) after reading the carts, and every later
run too; MariaDB refused a tier and cut a sequence or a template; SQLite kept them all. Now the
file is refused as it loads (exit 2, one line naming the file, the key and the limit), before any
ledger is opened, on every kind of ledger; a name exactly as long as its column is kept whole.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import shopdb
import sqlalchemy as sa

from cartrescue.ledger import Ledger, config_value_limits
from conftest import REPO, Shop, cart, cli

SENDER = " <shop@example.com>"  # BASE_CONFIG's sender, as the ledger records a run's shop


def _configure(shop: Shop, *, tier: str = "standard", sequence: str = "default", template: str = "reminder-1",
               name: str = "Test Shop", value: str | None = None) -> None:
    """``shop`` with one tier, one sequence of one step of ``template`` (copied from the shipped
    templates under that name), its ``name`` and, with ``value``, a code pool's offer of it."""
    if template != "reminder-1":
        shutil.copytree(REPO / "templates", shop.folder / "templates")
        for file in (shop.folder / "templates").rglob("reminder-1.*"):
            file.rename(file.with_name(template + file.name.removeprefix("reminder-1")))
        shop.configure(templates="templates")
    step: dict[str, Any] = {"delay": "1h", "template": template}
    if value is not None:
        step["incentive"] = {"kind": "fixed", "value": value, "codes": {"pool": "back", "pattern": "CR-{random:8}"}}
    shop.configure(shop={"name": name}, priority={"tiers": [{"name": tier, "min_score": 0, "sequence": sequence}]},
                   sequences={sequence: {"steps": [step]}})


def _value(column: str, length: int) -> tuple[str, str, dict[str, str]]:
    """A ``column`` value of ``length`` characters: the key path naming it, the value as the
    ledger keeps it, and the argument of :func:`_configure` that gives it."""
    if column == "shop":
        name = "S" * (length - len(SENDER))
        return "shop.name", name + SENDER, {"name": name}
    text = ("1." + "0" * (length - 2)) if column == "value" else column[0] * length
    key = {"tier": "priority.tiers[0].name", "sequence": f"sequences.{text}",
           "template": "sequences.default.steps[0].template",
           "value": "sequences.default.steps[0].incentive.value"}[column]
    return key, text, {column: text}


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


KINDS = [pytest.param("sqlite", id="sqlite"), *shopdb.KINDS]


@pytest.mark.parametrize("column", ["tier", "sequence", "template", "shop", "value"])
def test_a_config_value_longer_than_its_ledger_column_is_a_config_error_naming_key_and_limit(
        shop: Shop, column: str) -> None:
    limit = config_value_limits()[column]
    key, _text, given = _value(column, limit + 1)
    _configure(shop.add(cart("c1")), **given)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"))
    kept = " with shop.from_email (each run's shop: 'name <from_email>')" if column == "shop" else ""
    assert (result.exit_code, result.stdout) == (2, "")
    expected = f"error: {shop.config_path}: {key}: {limit + 1} characters{kept}, more than the ledger keeps ({limit})"
    assert len(result.stderr.splitlines()) == 1
    assert re.fullmatch(re.escape(expected) + r" \(line \d+\)", result.stderr.splitlines()[0]), result.stderr
    assert not (shop.folder / "ledger.db").exists() and not (shop.folder / "out").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_a_tier_name_too_long_for_the_ledger_stops_at_load_before_any_ledger_is_touched(
        shop: Shop, kind: str) -> None:
    """On PostgreSQL the run read its carts and stopped at the first claim, every run; now no
    ledger of any kind is opened, nor given its tables."""
    shop.add(cart("c1"))
    with shopdb.ledger_on(shop, kind) as url:
        key, _text, given = _value("tier", config_value_limits()["tier"] + 1)
        _configure(shop, **given)
        result = shop.cli("run", "--outbox", str(shop.folder / "out"))
        assert result.exit_code == 2
        assert f"{shop.config_path}: {key}: " in result.stderr
        assert kind != "sqlite" or not (shop.folder / "ledger.db").exists()
        assert kind == "sqlite" or _tables(url) == []


@pytest.mark.parametrize("kind", KINDS)
def test_names_as_long_as_their_ledger_columns_are_recorded_whole_on_every_ledger(shop: Shop, kind: str) -> None:
    limits = config_value_limits()
    shop.add(cart("c1"))
    with shopdb.ledger_on(shop, kind) as url:
        values = {column: _value(column, limits[column]) for column in ("tier", "sequence", "template", "shop")}
        _configure(shop, **{name: text for _key, _text, given in values.values() for name, text in given.items()})
        names = {column: text for column, (_key, text, _given) in values.items()}
        result = shop.cli("run", "--outbox", str(shop.folder / "out"))
        assert result.exit_code == 0, result.output
        ledger = Ledger(url)
        try:
            [message] = ledger.messages()
            assert {column: message[column] for column in ("tier", "sequence", "template")} == \
                {column: names[column] for column in ("tier", "sequence", "template")}
            assert ledger.recent_shops() == [names["shop"]]
        finally:
            ledger.close()


def test_a_sql_sources_name_that_leaves_its_cart_ids_little_room_in_the_key_is_refused(tmp_path: Path) -> None:
    """``options.name`` starts each cart's key (``name:id``) as ``source.key_prefix`` does, and is
    bounded as it is: 200 characters left an id no room, and every cart was refused."""
    config = tmp_path / "cartrescue.yaml"
    config.write_text("source:\n  type: sql\n  url: sqlite:///shop.db\n  queries: {carts: SELECT 1}\n"
                      f"  options: {{name: {'n' * 31}}}\n")
    result = cli("run", "--config", str(config))
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"error: {config}: source.options.name: 31 characters, more than a source's name in the ledger's cart keys "
        "(name:id) may have (30, as source.key_prefix) (line 5)"]
