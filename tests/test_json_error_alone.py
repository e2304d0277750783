"""A `run` or `carts` that fails before it wrote any output prints the `error` document alone.

README: "When a command fails, its document is the `error` object alone, `{"error": {…}}`";
only a run that fails after its output began ends that document with `error` after what it
wrote. The run's document is streamed, and its opening (`{"mode": ..., "now": ...,
"decisions": [`) used to be written before the run's start-up checks (the secret of a
delivering run, the steps' templates): a config error found there printed a whole run's
document with an `error` in it, though nothing had begun.
"""

from __future__ import annotations

import pytest

from conftest import Shop, cart

WORKERS = ["1", pytest.param("2", marks=pytest.mark.slow)]


def _error_alone(document: object, code: str, exit_code: int, message: str) -> None:
    assert isinstance(document, dict) and list(document) == ["error"], document
    error = document["error"]
    assert (error["code"], error["exit_code"]) == (code, exit_code)
    assert message in error["message"]


@pytest.mark.parametrize("workers", WORKERS)
def test_a_send_without_a_secret_prints_the_error_document_alone(shop: Shop, workers: str) -> None:
    shop.configure(shop={"unsubscribe_secret": ""}).add(cart("c1"))
    result = shop.cli("run", "--send", "--json", "--workers", workers)
    assert result.exit_code == 2, result.output
    _error_alone(result.json, "config", 2, "shop.unsubscribe_secret: empty")
    assert result.stderr.count("shop.unsubscribe_secret: empty") == 1, result.stderr  # said once, workers or not


@pytest.mark.parametrize("workers", WORKERS)
def test_a_dry_run_with_a_missing_step_template_prints_the_error_document_alone(shop: Shop, workers: str) -> None:
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "no-such-template"}]}})
    shop.add(cart("c1"))
    result = shop.cli("run", "--json", "--workers", workers)
    assert result.exit_code == 2, result.output
    _error_alone(result.json, "config", 2, "sequences.default.steps[0].template")


def test_carts_with_a_missing_step_template_prints_the_error_document_alone(shop: Shop) -> None:
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "no-such-template"}]}})
    shop.add(cart("c1"))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 2, result.output
    _error_alone(result.json, "config", 2, "sequences.default.steps[0].template")


@pytest.mark.parametrize("workers", WORKERS)
def test_a_run_of_no_carts_still_prints_its_whole_document(shop: Shop, workers: str) -> None:
    result = shop.cli("run", "--outbox", "out", "--json", "--workers", workers)
    assert result.exit_code == 0, result.output
    document = result.json
    assert (document["mode"], document["decisions"], document["counts"]["carts"]) == ("outbox", [], 0)
    assert "error" not in document


def test_carts_of_no_carts_still_prints_its_whole_document(shop: Shop) -> None:
    document = shop.cli("carts", "--json").json
    assert (document["mode"], document["decisions"], document["counts"]["carts"]) == ("plan", [], 0)
