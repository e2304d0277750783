"""`run --eml DIR`: a dry-run that also writes the messages it would send, recording nothing.

`--outbox DIR` writes the same files but is a delivery: every step it writes counts as sent, so
a shop owner who used it to look before a live run had used up step 1 of every due cart. `--eml`
is the look: the files a delivering run would send, and the ledger untouched.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest
from conftest import NOW, REPO, Shop, cart, iso

from cartrescue.ledger import Ledger


def _shop(shop: Shop) -> Shop:
    return shop.add(cart("c1", email="ann@example.com"), cart("c2", email="bo@example.com"),
                    cart("c3", email="cy@example.com", consent="no"))


def _messages(shop: Shop) -> list[dict]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return ledger.messages()
    finally:
        ledger.close()


def test_a_dry_run_with_eml_writes_each_message_it_would_send_and_records_nothing(shop: Shop) -> None:
    folder = shop.folder / "look"
    result = _shop(shop).cli("run", "--eml", str(folder), "--json")
    assert result.exit_code == 0, result.output
    sent = {row["cart_id"]: row for row in result.json["decisions"] if row["action"] == "send"}
    assert sorted(sent) == ["c1", "c2"]
    files = sorted(folder.glob("*.eml"))
    assert [path.name for path in files] == ["csv_c1-step1.eml", "csv_c2-step1.eml"]
    for path in files:
        parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        cart_id = path.name[4:6]
        assert parsed["To"].addresses[0].addr_spec == sent[cart_id]["email"]
        assert parsed["Subject"] == sent[cart_id]["subject"]
        assert sent[cart_id]["detail"] == str(path)
    assert _messages(shop) == []
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")  # nothing was used up
    assert later.json["counts"]["sent"] == 2


def test_two_carts_whose_ids_make_the_same_safe_name_get_a_file_each(shop: Shop) -> None:
    folder = shop.folder / "look"
    shop.add(cart("x/1", email="ann@example.com"), cart("x_1", email="bo@example.com"))
    result = shop.cli("run", "--eml", str(folder), "--json")
    assert result.exit_code == 0, result.output
    written = {email.message_from_bytes(path.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec
               for path in folder.glob("*.eml")}
    assert written == {"ann@example.com", "bo@example.com"}
    assert (folder / "csv_x_1-step1.eml").exists()  # the plain id keeps its plain name


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_summary_names_the_folder_the_messages_were_written_to(shop: Shop, workers: str) -> None:
    folder = shop.folder / "look"
    result = _shop(shop).cli("run", "--eml", str(folder), "--workers", workers)
    assert result.exit_code == 0, result.output
    said = "".join(result.stdout.replace("│", " ").split())  # a long path is folded anywhere in the panel
    assert f"themessagesitwouldsendarein{folder}" in said, result.stdout


@pytest.mark.parametrize("flag", [["--send"], ["--outbox", "out"]])
def test_eml_is_a_dry_runs_option_only(shop: Shop, flag: list[str]) -> None:
    result = _shop(shop).cli("run", "--eml", str(shop.folder / "look"), *flag, "--json")
    assert result.exit_code == 2
    assert result.json["error"]["message"] == "--eml writes a dry-run's messages: not with --send or --outbox"


def test_an_eml_path_that_is_a_file_is_a_usage_error_before_anything_is_read(shop: Shop) -> None:
    (shop.folder / "look").write_text("not a folder", encoding="utf-8")
    result = _shop(shop).cli("run", "--eml", str(shop.folder / "look"), "--json")
    assert result.exit_code == 2 and "--eml" in result.json["error"]["message"]
    assert "is a file, not a folder" in result.json["error"]["message"]


@pytest.mark.slow
def test_workers_write_the_same_files_as_one_process(shop: Shop) -> None:
    _shop(shop).add(*(cart(f"d{n:02d}") for n in range(20))).write()

    def run(folder: Path, workers: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--workers", workers, "--eml",
                               str(folder), "--config", str(shop.config_path), "--now", iso(NOW)],
                              cwd=REPO, capture_output=True, timeout=120, check=False, env=dict(os.environ))
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    one, two = shop.folder / "one", shop.folder / "two"
    assert run(one, "1")["counts"] == run(two, "2")["counts"]
    names = sorted(path.name for path in one.iterdir())
    assert len(names) == 22 and names == sorted(path.name for path in two.iterdir())
    assert _messages(shop) == []


@pytest.mark.parametrize(("locale", "shown"), [("hu", "Kovács Ágnes"), ("hu-HU", "Kovács Ágnes"),
                                               ("sv", "Ágnes Kovács"), ("", "Ágnes Kovács")])
def test_to_writes_the_name_in_the_order_of_the_customers_language(shop: Shop, locale: str, shown: str) -> None:
    """Hungarian puts the family name first (Kovács Ágnes), as a CSV's full_name is read: the
    To: of a Hungarian customer said "Ágnes Kovács", the order of no Hungarian."""
    folder = shop.folder / "look"
    shop.add(cart("c1", locale=locale, first_name="Ágnes", last_name="Kovács"))
    assert shop.cli("run", "--eml", str(folder)).exit_code == 0
    parsed = email.message_from_bytes((folder / "csv_c1-step1.eml").read_bytes(), policy=policy.default)
    assert parsed["To"].addresses[0].display_name == shown


@pytest.mark.parametrize("name", ["Test Shop Support", 'Kundtjänst "Test" \\ Shop'])
def test_reply_to_carries_the_configured_display_name(shop: Shop, name: str) -> None:
    folder = shop.folder / "look"
    shop.add(cart("c1", email="ann@example.com"))
    shop.configure(shop={"reply_to": "support@example.com", "reply_to_name": name})
    result = shop.cli("run", "--eml", str(folder), "--json")
    assert result.exit_code == 0, result.output
    parsed = email.message_from_bytes((folder / "csv_c1-step1.eml").read_bytes(), policy=policy.default)
    (address,) = parsed["Reply-To"].addresses
    assert (address.display_name, address.addr_spec) == (name, "support@example.com")


def test_reply_to_without_a_name_is_the_bare_address(shop: Shop) -> None:
    folder = shop.folder / "look"
    shop.add(cart("c1", email="ann@example.com")).configure(shop={"reply_to": "support@example.com"})
    assert shop.cli("run", "--eml", str(folder), "--json").exit_code == 0
    data = (folder / "csv_c1-step1.eml").read_bytes()
    assert b"\r\nReply-To: support@example.com\r\n" in data
