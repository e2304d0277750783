"""Unsubscribe: a token from a real message stops every stream of its address; forgeries do not.

The one-click path is tested end to end: a message is sent over SMTP to the loopback server, its
``List-Unsubscribe`` URL is POSTed the way a mail client does (RFC 8058) to the WSGI app served
by a real ``wsgiref.simple_server`` on loopback, and a later run skips the address. The CLI
commands ``unsubscribe`` and ``suppress import|list|remove`` run through conftest's real CLI.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from smtpserver import LoopbackSMTP

from cartrescue.config import load_config
from cartrescue.contacts import email_hash
from cartrescue.unsubscribe import PreviewToken, make_token, verify_token
from cartrescue.unsubscribe_words import PAGE_WORDS
from cartrescue.webhook import make_app
from conftest import NOW, Shop, cart, cli

SECRET = "test-secret-of-the-suite"  # conftest's shop.unsubscribe_secret


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _Threaded(ThreadingMixIn, WSGIServer):
    """One thread per connection: a browser's idle preconnection must not hold up the next request."""

    daemon_threads = True


@contextmanager
def webhook(shop: Shop | Path) -> Iterator[str]:
    """The WSGI app (unsubscribe and survey) on a real wsgiref server, 127.0.0.1 and an OS-chosen port;
    ``shop``: a test shop (written first), or the path of a config file as it is (a copy of examples/)."""
    if isinstance(shop, Shop):
        shop.write()
    app = make_app(shop.config_path if isinstance(shop, Shop) else shop)
    server = make_server("127.0.0.1", 0, app, server_class=_Threaded, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        app.ledger.close()  # type: ignore[attr-defined]


def http(url: str, data: bytes | None = None, content_type: str = "application/x-www-form-urlencoded",
         method: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")



def local(url: str, base: str) -> str:
    """The shop's unsubscribe URL, pointed at the local server (same path and query)."""
    parts = urlsplit(url)
    return f"{base}{parts.path}?{parts.query}"


@pytest.mark.smtp
def test_a_dry_runs_eml_links_unsubscribe_and_answer_for_nobody(shop: Shop) -> None:
    """``run --eml DIR`` writes the messages a dry-run would send, for the owner to read; their
    links were the customer's own, so opening one in a mail client and pressing its Unsubscribe
    button unsubscribed the customer, and a survey click answered for them and ended their
    sequence. They are test links, as a preview's are."""
    from email import message_from_bytes, policy

    shop.configure(survey={"url": "https://shop.example.com/cart-survey?token={token}"})
    shop.add(cart("a1", email="ann@example.com"))
    looked = shop.cli("run", "--eml", str(shop.folder / "look"))
    assert looked.exit_code == 0, looked.output
    (eml,) = (shop.folder / "look").glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    url = re.search(r"<(https://[^>]+)>", str(message["List-Unsubscribe"])).group(1)
    text = message.get_body(("plain",)).get_content()
    price = re.search(r"https://shop\.example\.com/cart-survey\?token=([A-Za-z0-9_.-]+)&reason=price", text).group(1)
    with webhook(shop) as base:
        status, page = http(local(url, base), b"List-Unsubscribe=One-Click")  # the mail client's button
        assert status == 200 and "This is a preview link" in page
        assert http(f"{base}/cart-survey", f"token={price}&reason=price".encode())[0] == 200
    assert shop.suppression("ann@example.com") is None
    decision = shop.decisions()["a1"]
    assert (decision["action"], decision["reason"]) == ("send", "due")  # ann still gets her reminder


def test_one_click_from_a_real_message_stops_every_stream_of_the_address(shop: Shop) -> None:
    shop.add(cart("a1", email="ann@example.com", idle=timedelta(hours=2)),
             cart("b1", email="bob@example.com", idle=timedelta(hours=2)))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        assert shop.cli("run", "--send").exit_code == 0
        received = {m.rcpt_tos[0]: m.parsed() for m in server.wait_for(2)}
        header = received["ann@example.com"]["List-Unsubscribe"]
        url = re.search(r"<(https://[^>]+)>", header).group(1)

        with webhook(shop) as base:
            status, page = http(local(url, base), b"List-Unsubscribe=One-Click")  # what mail clients POST
            assert status == 200 and "ann@example.com" in page
            assert http(local(url, base), b"List-Unsubscribe=One-Click")[0] == 200  # again: harmless

        record = shop.suppression("ann@example.com")
        assert record is not None and record["reason"] == "unsubscribed" and record["source"] == "webhook (token)"
        assert shop.suppression("bob@example.com") is None

        # A day later: ann's step 2 and her new cart are skipped, bob gets his step 2.
        shop.add(cart("a2", email="ann@example.com", idle=timedelta(hours=2), now=NOW + timedelta(days=1)))
        later = shop.cli("run", "--send", "--json", now=NOW + timedelta(days=1, hours=1))
        assert later.exit_code == 0, later.output
        server.wait_for(3)
        decisions = {row["cart_id"]: row for row in later.json["decisions"]}
    assert decisions["a1"]["reason"] == decisions["a2"]["reason"] == "suppressed"
    assert decisions["b1"]["delivery"] == "sent" and decisions["b1"]["step"] == 2
    assert server.recipients()["ann@example.com"] == 1


def test_get_shows_a_confirmation_and_changes_nothing(shop: Shop) -> None:
    token = make_token("ann@example.com", SECRET)
    with webhook(shop) as base:
        status, page = http(f"{base}/unsubscribe?token={token}")
        assert status == 200
        assert 'method="post"' in page and "ann@example.com" in page and token in page
        assert shop.suppression("ann@example.com") is None
        # the page's button posts the token as a form field
        status, page = http(f"{base}/unsubscribe", f"token={token}".encode())
        assert status == 200 and "unsubscribed" in page
    assert shop.suppression("ann@example.com") is not None


def _lang_and_title(page: str) -> tuple[str, str]:
    found = re.search(r'<html lang="([^"]+)">.*?<h1[^>]*>(.*?)</h1>', page, re.DOTALL)
    assert found, page
    return found.group(1), found.group(2)


def test_the_unsubscribe_pages_speak_the_language_the_browser_asks_for(shop: Shop) -> None:
    # The message was Swedish; the person who clicks its link reads the page in their browser's
    # language, as the survey page beside it does, not in English.
    token = make_token("ann@example.com", SECRET)
    swedish = {"Accept-Language": "sv-SE,sv;q=0.9,en-US;q=0.8,en;q=0.7"}
    with webhook(shop) as base:
        status, page = http(f"{base}/unsubscribe?token={token}", headers=swedish)
        assert status == 200 and _lang_and_title(page) == ("sv", "Avregistrera")
        assert "ann@example.com" in page and ">Avregistrera</button>" in page
        assert shop.suppression("ann@example.com") is None
        status, page = http(f"{base}/unsubscribe?token={token}", b"List-Unsubscribe=One-Click", headers=swedish)
        assert status == 200 and _lang_and_title(page) == ("sv", "Du är avregistrerad")
        status, page = http(f"{base}/unsubscribe?token={token[:-3]}", headers=swedish)
        assert status == 400 and _lang_and_title(page) == ("sv", "Länken för att avregistrera sig är inte giltig")
    assert shop.suppression("ann@example.com") is not None


def test_the_unsubscribe_page_takes_the_browsers_first_language_that_has_words(shop: Shop) -> None:
    token = make_token("ann@example.com", SECRET)
    with webhook(shop) as base:
        page = http(f"{base}/unsubscribe?token={token}", headers={"Accept-Language": "de-DE, ru;q=0.8, sv;q=0.5"})[1]
        assert _lang_and_title(page) == ("ru", "Отписаться")
        page = http(f"{base}/unsubscribe?token={token}", headers={"Accept-Language": "sv;q=0.2, kk;q=0.9"})[1]
        assert _lang_and_title(page)[0] == "kk"


def test_without_a_browser_language_it_knows_the_unsubscribe_page_speaks_the_shops_default_locale(shop: Shop) -> None:
    shop.configure(shop={"default_locale": "hu"})
    token = make_token("ann@example.com", SECRET)
    with webhook(shop) as base:
        for asked in ({}, {"Accept-Language": "de-DE,de;q=0.9"}, {"Accept-Language": "*"}):
            page = http(f"{base}/unsubscribe?token={token}", headers=asked)[1]
            assert _lang_and_title(page)[0] == "hu", asked


def test_every_shipped_locale_has_every_unsubscribe_page_word_in_its_own_language() -> None:
    shipped = {path.name for path in (Path(__file__).resolve().parent.parent / "templates").iterdir() if path.is_dir()}
    assert shipped == set(PAGE_WORDS)  # every locale with templates has the words, and no other
    keys = set(PAGE_WORDS["en"])
    for locale, said in PAGE_WORDS.items():
        assert set(said) == keys and all(text.strip() for text in said.values()), locale
        assert all("{address}" in said[key] for key in ("question", "done_body")), locale
        if locale != "en":
            same = [key for key in keys if said[key] == PAGE_WORDS["en"][key]]
            assert same == [], f"{locale}: not translated: {same}"


@pytest.mark.parametrize("forge", [
    lambda token: make_token("ann@example.com", "another-secret"),  # signed with the wrong key
    lambda token: make_token("eve@example.com", SECRET).split(".")[0] + "." + token.split(".")[1],  # address swapped
    lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),  # signature altered
    lambda token: "not-a-token",
    lambda token: "ann@example.com",  # an address is not a token
    lambda token: token[:3] + "!" + token[3:],  # a character base64 does not have, which its decoder skipped
    lambda token: token + "%3D%3D%3D%3D",  # padding after the signature, which its decoder dropped
])
def test_forged_or_altered_tokens_are_refused(shop: Shop, forge) -> None:
    forged = forge(make_token("ann@example.com", SECRET))
    with webhook(shop) as base:
        post = http(f"{base}/unsubscribe?token={forged}", b"List-Unsubscribe=One-Click")
        get = http(f"{base}/unsubscribe?token={forged}")
    assert post[0] == 400 and get[0] == 400
    assert shop.suppression("ann@example.com") is None and shop.suppression("eve@example.com") is None


def test_token_in_the_path(shop: Shop) -> None:
    shop.configure(shop={"unsubscribe_url": "https://shop.example.com/u/{token}"})
    token = make_token("ann@example.com", SECRET)
    with webhook(shop) as base:
        assert http(f"{base}/u/{token}")[0] == 200
        assert shop.suppression("ann@example.com") is None
        assert http(f"{base}/u/{token}", b"List-Unsubscribe=One-Click")[0] == 200
    assert shop.suppression("ann@example.com") is not None


def one_click_from_a_real_message(shop: Shop, unsubscribe_url: str) -> str:
    """Send a reminder under ``unsubscribe_url``, then GET (the confirmation page, nothing changes)
    and POST One-Click its List-Unsubscribe link on the real app; the link is returned."""
    from email import message_from_bytes

    shop.configure(shop={"unsubscribe_url": unsubscribe_url})
    shop.add(cart("a1", email="ann@example.com", idle=timedelta(hours=2)))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    (eml,) = (shop.folder / "out").glob("*.eml")
    url = re.search(r"<(https://[^>]+)>", message_from_bytes(eml.read_bytes())["List-Unsubscribe"]).group(1)
    with webhook(shop) as base:
        status, page = http(local(url, base))
        assert status == 200 and "ann@example.com" in page
        assert shop.suppression("ann@example.com") is None
        assert http(local(url, base), b"List-Unsubscribe=One-Click")[0] == 200
    assert shop.suppression("ann@example.com") is not None
    return url


def test_a_real_messages_unsubscribe_link_does_not_carry_the_address_readable(shop: Shop) -> None:
    """The token's payload was the address in base64url (``YW5uQGV4YW1wbGUuY29t`` for
    ann@example.com): every web server log, proxy and link scanner the link passed kept the
    customer's address, one decode away. It is sealed now, and still unsubscribes its address."""
    import base64

    url = one_click_from_a_real_message(shop, "https://shop.example.com/unsubscribe?token={token}")
    token = parse_qs(urlsplit(url).query)["token"][0]
    for part in token.split("."):
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        assert b"ann" not in decoded and b"example" not in decoded


def test_a_link_in_mail_sent_before_tokens_were_sealed_still_unsubscribes(shop: Shop) -> None:
    """A message already sent carries a token whose payload is the address itself (signed the
    same way): its link keeps working, as the secret's does."""
    from cartrescue.tokens import sign

    old = sign("unsubscribe", "ann@example.com", SECRET)
    with webhook(shop) as base:
        assert http(f"{base}/unsubscribe?token={old}", b"List-Unsubscribe=One-Click")[0] == 200
    assert shop.suppression("ann@example.com") is not None


def test_a_token_under_another_query_key_unsubscribes_from_a_real_message(shop: Shop) -> None:
    """``unsubscribe_url: …?u={token}`` was taken by the config and carried by every message,
    and the app looked for ``token=`` alone: every link and one-click POST was refused (400)."""
    url = one_click_from_a_real_message(shop, "https://shop.example.com/unsubscribe?u={token}&utm_source=mail.v2")
    assert "?u=" in url


def test_a_token_in_a_middle_path_segment_unsubscribes_from_a_real_message(shop: Shop) -> None:
    """``unsubscribe_url: …/unsubscribe/{token}/confirm`` was taken by the config and carried by
    every message, and the app read only ``token=`` or the last segment ("confirm"): 400."""
    url = one_click_from_a_real_message(shop, "https://shop.example.com/unsubscribe/{token}/confirm?utm_source=mail.v2")
    assert url.startswith("https://shop.example.com/unsubscribe/") and "/confirm?" in url


def test_the_unsubscribe_command_takes_a_link_with_the_token_under_another_query_key(shop: Shop) -> None:
    """``cartrescue unsubscribe URL`` read a link's token only from ``token=`` or its last path
    segment: the link of a message under ``?u={token}`` was refused (exit 2, "invalid token")."""
    shop.configure(shop={"unsubscribe_url": "https://shop.example.com/unsubscribe?u={token}&utm_source=mail.v2"})
    token = make_token("ann@example.com", SECRET)
    result = shop.cli("unsubscribe", f"https://shop.example.com/unsubscribe?u={token}&utm_source=mail.v2", "--json",
                      now=None)
    assert result.exit_code == 0, result.output + result.stderr
    assert shop.suppression("ann@example.com") is not None


def _suppressed(config: Path, address: str) -> dict | None:
    from cartrescue.ledger import Ledger

    ledger = Ledger(load_config(config).ledger.url)
    try:
        return ledger.suppression(email_hash(address))
    finally:
        ledger.close()


def test_a_previews_unsubscribe_link_says_so_and_unsubscribes_nobody(demo: Path) -> None:
    """A developer clicking "unsubscribe" in a preview of the demo's cart-000003 unsubscribed its
    real customer: the link was signed for them, as in the reminder they get."""
    customer = "odon.balogh4@hu.example.net"
    shown = cli("preview", "cart-000003", "--json", "--config", str(demo))
    assert shown.exit_code == 0, shown.output
    url = re.search(r"https://shop\.example\.com/unsubscribe\?token=[A-Za-z0-9_.-]+", shown.json["text"]).group(0)
    with pytest.raises(PreviewToken):  # still a genuine token of this shop, for the customer's address
        verify_token(parse_qs(urlsplit(url).query)["token"][0], "demo-secret-not-for-production")
    with webhook(demo) as base:
        status, page = http(local(url, base))
        assert (status, "This is a preview link" in page, 'method="post"' in page) == (200, True, False)
        status, page = http(local(url, base), b"List-Unsubscribe=One-Click")  # a mail client's one click
        assert status == 200 and "nobody was unsubscribed" in page
    assert _suppressed(demo, customer) is None
    refused = cli("unsubscribe", url, "--config", str(demo))
    assert refused.exit_code == 2 and "preview" in refused.stderr
    assert _suppressed(demo, customer) is None
    (decision,) = [d for d in cli("carts", "--json", "--config", str(demo)).json["decisions"]
                   if d["cart_id"] == "cart-000003"]
    assert (decision["action"], decision["reason"]) == ("send", "due")  # the customer still gets the reminder


def test_a_send_tests_one_click_link_unsubscribes_nobody(demo: Path) -> None:
    """A test mail's List-Unsubscribe (a mail client's button, or the test forwarded on) unsubscribed
    whoever it carried; a test's links are test links like a preview's."""
    sent = cli("send-test", "dev@example.com", "cart-000003", "--outbox", str(demo.parent / "t"), "--config", str(demo))
    assert sent.exit_code == 0, sent.output
    (eml,) = (demo.parent / "t").glob("*.eml")
    from email import message_from_bytes

    url = re.search(r"<(https://[^>]+)>", message_from_bytes(eml.read_bytes())["List-Unsubscribe"]).group(1)
    with webhook(demo) as base:
        status, page = http(local(url, base), b"List-Unsubscribe=One-Click")
    assert status == 200 and "This is a preview link" in page
    assert _suppressed(demo, "dev@example.com") is None and _suppressed(demo, "odon.balogh4@hu.example.net") is None


def test_webhook_refuses_other_methods(shop: Shop) -> None:
    with webhook(shop) as base:
        status, _page = http(f"{base}/unsubscribe?token=x", b"", method="DELETE")
    assert status == 405


def test_cli_unsubscribe_takes_a_token_a_url_a_mailto_subject_or_an_address(shop: Shop) -> None:
    token = make_token("Ann@Example.com", SECRET)
    by_token = shop.cli("unsubscribe", token, "--json", now=None)
    assert by_token.exit_code == 0, by_token.output
    assert by_token.json == {"email": "ann@example.com", "phone": None, "added": True, "warnings": []}
    again = shop.cli("unsubscribe", f"https://shop.example.com/unsubscribe?token={token}", "--json", now=None)
    assert again.json == {"email": "ann@example.com", "phone": None, "added": False, "warnings": []}
    subject = shop.cli("unsubscribe", f"unsubscribe {make_token('bob@example.com', SECRET)}", now=None)
    assert subject.exit_code == 0 and "bob@example.com: unsubscribed" in subject.stderr
    address = shop.cli("unsubscribe", "Carl@Example.com ", "--json", now=None)
    assert address.json == {"email": "carl@example.com", "phone": None, "added": True, "warnings": []}
    for who in ("ann@example.com", "bob@example.com", "carl@example.com"):
        assert shop.suppression(who)["reason"] == "unsubscribed"


def test_cli_unsubscribe_refuses_a_forged_token(shop: Shop) -> None:
    forged = make_token("ann@example.com", "not-the-shops-secret")
    result = shop.cli("unsubscribe", forged, now=None)
    assert result.exit_code == 2
    assert "refused" in result.stderr and "signature" in result.stderr
    assert shop.suppression("ann@example.com") is None


def test_suppress_import_quotes_a_huge_invalid_cell_in_one_short_warning(shop: Shop, tmp_path: Path) -> None:
    export = tmp_path / "unsubscribed.csv"
    export.write_text(f"email\nann@example.com\n{'x' * 100_000}\n", encoding="utf-8")
    shop.suppression("bob@example.com")  # the ledger is there: its only warning is the cell's
    result = shop.cli("suppress", "import", str(export), now=None)
    assert result.exit_code == 1
    text = "".join(result.stderr.split("\n"))  # the terminal wraps a long line
    assert "unsubscribed.csv:3: not an e-mail address or phone number: 'xxx" in text and "x…" in text and len(text) < 400


def test_suppress_import_of_a_missing_or_undecodable_file_says_why_in_plain_words(shop: Shop, tmp_path: Path) -> None:
    missing = shop.cli("suppress", "import", str(tmp_path / "nofile.csv"), "--json", now=None)
    assert missing.exit_code == 2
    assert missing.json["error"]["message"] == f"{tmp_path / 'nofile.csv'}: cannot read: No such file or directory"
    binary = tmp_path / "export.xlsx"
    binary.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb7\x8a")
    undecodable = shop.cli("suppress", "import", str(binary), "--json", now=None)
    assert undecodable.exit_code == 2
    assert undecodable.json["error"]["message"].startswith(f"{binary}:1: cannot read: not UTF-8 text")


def test_suppress_import_of_a_utf16_list_reads_its_addresses(shop: Shop, tmp_path: Path) -> None:
    """Excel's "Unicode Text" save (UTF-16 with its byte-order mark, tabs) was refused whole: "cannot
    read: 'utf-8' codec can't decode byte 0xff in position 0", and nobody on it was suppressed."""
    export = tmp_path / "unsubscribed.txt"
    export.write_bytes("Email\tName\nann@example.com\tÅsa\nbob@example.com\tBo\n".encode("utf-16"))
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["added"] == 2 and result.json["invalid"] == []


def test_suppress_import_of_a_list_not_in_utf8_names_the_line_and_what_to_save_it_as(shop: Shop, tmp_path: Path) -> None:
    """A cp1252 list (a name with an ö on line 3) was "can't decode byte 0xf6 in position 41":
    no line, and no word of how to save it so that it reads."""
    export = tmp_path / "unsubscribed.csv"
    export.write_bytes("email,name\nann@example.com,Ann\nbob@example.com,Björn\n".encode("cp1252"))
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 2
    assert result.json["error"]["message"] == (
        f"{export}:3: cannot read: not UTF-8 text (byte 19 of the line); save the list as CSV UTF-8 (or "
        "Unicode Text) and import that")
    assert shop.suppression("ann@example.com") is None


def test_suppress_import_of_a_one_column_export_skips_its_header(shop: Shop, tmp_path: Path) -> None:
    """A one-column CSV has no delimiter, so it reads as one address a line: its header was an
    invalid address, and the import exited 1 on a clean file."""
    export = tmp_path / "old-tool-unsubscribes.csv"
    export.write_text("Email\nann@example.com\nbob@example.com\n", encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["added"] == 2 and result.json["invalid"] == []


def test_suppress_import_of_a_one_column_export_that_quotes_every_cell(shop: Shop, tmp_path: Path) -> None:
    """Read line by line, the quotes stayed on: the header and every address were invalid."""
    export = tmp_path / "quoted.csv"
    export.write_text('"Email Address"\n"ann@example.com"\n"bob@example.com"\n', encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["added"] == 2 and result.json["invalid"] == []


def test_suppress_import_list_and_remove(shop: Shop, tmp_path: Path) -> None:
    export = tmp_path / "unsubscribed.csv"
    export.write_text("Email Address,First Name,Unsub Time\nann@example.com,Ann,2026-01-01\n"
                      "BOB@example.com ,Bob,2026-01-02\nnot-an-address,X,2026-01-03\n", encoding="utf-8")
    plain = tmp_path / "bounces.txt"
    plain.write_text("# hard bounces\ncarl@example.com\n\nann@example.com\n", encoding="utf-8")

    first = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert first.exit_code == 1  # one invalid entry
    assert first.json["added"] == 2 and first.json["already"] == 0
    assert first.json["invalid"] == [{"where": "unsubscribed.csv:4", "value": "not-an-address"}]
    second = shop.cli("suppress", "import", str(plain), "--reason", "bounce list", "--json", now=None)
    assert second.exit_code == 0, second.output
    assert second.json["added"] == 1 and second.json["already"] == 1

    listed = shop.cli("suppress", "list", "--json", now=None)
    assert listed.exit_code == 0
    rows = listed.json["suppressions"]
    assert len(rows) == 3 and {row["reason"] for row in rows} == {"imported", "bounce list"}
    assert email_hash("bob@example.com") in {row["email_hash"] for row in rows}
    assert shop.cli("suppress", "list", "--email", "Bob@example.com", now=None).exit_code == 0
    assert shop.cli("suppress", "list", "--email", "dora@example.com", now=None).exit_code == 1

    removed = shop.cli("suppress", "remove", "bob@example.com", "--json", now=None)
    assert removed.exit_code == 0 and removed.json == {"email": "bob@example.com", "phone": None, "removed": True,
                                                      "warnings": []}
    assert shop.cli("suppress", "remove", "bob@example.com", now=None).exit_code == 1
    assert shop.suppression("bob@example.com") is None and shop.suppression("ann@example.com") is not None


def test_a_suppressed_address_is_skipped_with_its_reason(shop: Shop) -> None:
    shop.add(cart("a1", email="ann@example.com"), cart("b1", email="bob@example.com"))
    assert shop.cli("unsubscribe", "ann@example.com", now=None).exit_code == 0
    decisions = shop.decisions()
    assert decisions["a1"]["action"] == "skip" and decisions["a1"]["reason"] == "suppressed"
    assert decisions["b1"]["action"] == "send"


def test_webhook_needs_the_secret(shop: Shop) -> None:
    shop.configure(shop={"unsubscribe_secret": ""})
    shop.write()
    from cartrescue.errors import ConfigError

    with pytest.raises(ConfigError, match="unsubscribe_secret"):
        make_app(load_config(shop.config_path))


def test_a_ledger_that_cannot_be_reached_answers_503_with_retry_after_and_changes_nothing(shop: Shop) -> None:
    """A one-click POST or a survey answer while the ledger's database is down (or locked past its
    wait) raised into the WSGI server: a bare 500 without our headers, a traceback in its log. It
    is a 503 a mail client may retry, ``Retry-After``, a page saying to try again, not cached, and
    one line in the server's log; the GET's confirmation page needs no ledger and still shows."""
    from cartrescue import survey
    from cartrescue.config import load_config as load

    shop.configure(ledger={"url": "postgresql+psycopg://postgres@127.0.0.1:1/audit_webaudit_down"})
    shop.write()
    token = make_token("ann@example.com", SECRET)
    answer = survey.make_token("csv:c1", 1, "sv", SECRET)
    errors: list[str] = []

    class Log(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def get_stderr(self):  # type: ignore[no-untyped-def]
            class Sink:
                def write(self, text: str) -> None:
                    errors.append(text)

                def flush(self) -> None:
                    pass
            return Sink()

    server = make_server("127.0.0.1", 0, make_app(load(shop.config_path)), server_class=_Threaded, handler_class=Log)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        for url, body in ((f"{base}/unsubscribe?token={token}", b"List-Unsubscribe=One-Click"),
                          (f"{base}/cart-survey?token={answer}", b"reason=price")):
            request = urllib.request.Request(url, data=body, headers={"Accept-Language": "sv"})
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 503, url
            assert refused.value.headers["Retry-After"] and refused.value.headers["Cache-Control"] == "no-store"
            page = refused.value.read().decode("utf-8")
            assert _lang_and_title(page) == ("sv", "Försök igen om några minuter")
        assert http(f"{base}/unsubscribe?token={token}")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
    log = "".join(errors)
    assert "Traceback" not in log and log.count("cartrescue.webhook: the ledger cannot be reached") == 2, log


def test_the_documented_wsgi_snippet_works(shop: Shop) -> None:
    """docs/sending.md's gunicorn snippet, run as written (with this shop's config path)."""
    from conftest import REPO

    text = (REPO / "docs" / "sending.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    shop.write()
    namespace: dict = {}
    exec(snippet.replace("/srv/shop/cartrescue.yaml", str(shop.config_path)), namespace)  # noqa: S102
    application = namespace["application"]
    from io import BytesIO
    from wsgiref.util import setup_testing_defaults

    token = make_token("dora@example.com", SECRET)
    body = b"List-Unsubscribe=One-Click"
    environ: dict = {"REQUEST_METHOD": "POST", "QUERY_STRING": f"token={token}", "PATH_INFO": "/unsubscribe",
                     "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)),
                     "wsgi.input": BytesIO(body)}
    setup_testing_defaults(environ)
    statuses: list[str] = []
    page = b"".join(application(environ, lambda status, headers: statuses.append(status)))
    application.ledger.close()
    assert statuses == ["200 OK"] and b"dora@example.com" in page
    assert shop.suppression("dora@example.com") is not None


def test_suppress_import_names_the_physical_line_after_a_cell_that_spans_lines(shop: Shop, tmp_path: Path) -> None:
    export = tmp_path / "unsubscribed.csv"
    export.write_text('Email Address,Note\nann@example.com,"two\nlines"\nnot-an-address,x\n', encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.json["invalid"] == [{"where": "unsubscribed.csv:4", "value": "not-an-address"}]


def test_suppress_import_finds_the_delimiter_outside_quoted_cells(shop: Shop, tmp_path: Path) -> None:
    """A German export: ``;`` between cells, a comma inside a quoted header cell. The comma was
    taken for the delimiter and nothing was imported."""
    export = tmp_path / "abmeldungen.csv"
    export.write_text('"E-Mail";"Name, Vorname"\n"karl@example.de";"Muster, Karl"\n', encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert (result.json["added"], result.json["invalid"]) == (1, [])
    assert shop.suppression("karl@example.de") is not None


@pytest.mark.parametrize(("url", "said"), [
    ("https://shop.example.com/désabonner?token={token}", "'é' cannot stand in a link as written: percent-encode it"),
    ("https://shop.example.com/unsubscribe?token={token}&x=a b", "' ' cannot stand in a link as written"),
    ("shop.example.com/unsubscribe?token={token}", "expected an http(s) link"),
    ("https://shop.example.com/unsubscribe?token={token}&from=<news>", "'<' cannot stand in a link as written"),
    ('https://shop.example.com/unsubscribe?token={token}&q="x"', "'\"' cannot stand in a link as written"),
    ("https://shop.example.com/unsubscribe?token={token}&x=|", "'|' cannot stand in a link as written"),
    ("https://shop.example.com/u?token={token}&x==?utf-8?q?a?=", "'=?' cannot stand in a link as written"),
])
def test_an_unsubscribe_url_a_mail_client_cannot_use_is_a_config_error(shop: Shop, url: str, said: str) -> None:
    """It goes into the List-Unsubscribe header: a space or a non-ASCII letter made the whole
    header an encoded word, which no mail client reads as a link."""
    shop.configure(shop={"unsubscribe_url": url}).add(cart("c1"))
    result = shop.cli("run", "--json")
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert "shop.unsubscribe_url" in message and said in message and str(shop.config_path) in message


@pytest.mark.parametrize(("section", "key"), [("shop", "unsubscribe_url"), ("survey", "url")])
def test_a_link_with_its_token_after_the_hash_is_a_config_error(shop: Shop, section: str, key: str) -> None:
    """``…/unsubscribe#{token}`` was taken and carried by every message, but a browser or a
    one-click POST never sends what follows ``#``: every click reached the app without a token (400)."""
    shop.configure(**{section: {key: "https://shop.example.com/unsubscribe#{token}"}}).add(cart("c1"))
    result = shop.cli("run", "--json")
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert f"{section}.{key}" in message and "{token} stands after #" in message


def test_an_unsubscribe_mailto_is_percent_encoded_where_a_mailto_link_needs_it(shop: Shop, tmp_path: Path) -> None:
    """RFC 6068: ``%``, ``?`` and ``#`` in the address end or break the link ("un#sub" was cut
    at the "#", and "?" started the link's query); they are written %25, %3F and %23."""
    import email

    shop.configure(shop={"unsubscribe_mailto": "un#sub%x?y@shop.example.com"}).add(cart("c1"))
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    (path,) = (tmp_path / "out").glob("*.eml")
    header = email.message_from_bytes(path.read_bytes())["List-Unsubscribe"]
    assert "<mailto:un%23sub%25x%3Fy@shop.example.com?subject=unsubscribe%20" in header


def test_one_click_unsubscribing_is_offered_for_an_https_link_only(shop: Shop, tmp_path: Path) -> None:
    """RFC 8058: List-Unsubscribe-Post goes with an https link; a plain http one gets the header alone."""
    import email

    shop.configure(shop={"unsubscribe_url": "http://shop.example.com/unsubscribe?token={token}"}).add(cart("c1"))
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    (path,) = (tmp_path / "out").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes())
    assert message["List-Unsubscribe"].startswith("<http://shop.example.com/unsubscribe?token=")
    assert message["List-Unsubscribe-Post"] is None


@pytest.mark.parametrize("form", [
    "mailto:unsubscribe@shop.example.com?subject=unsubscribe%20{token}",
    "<mailto:unsubscribe@shop.example.com?subject=unsubscribe%20{token}>",
    "Re: unsubscribe {token}",
    "AW: Fwd: Unsubscribe: {token}",
    "[SPAM] unsubscribe {token}",
    "<https://shop.example.com/unsubscribe?token={token}>",
])
def test_cli_unsubscribe_takes_the_forms_a_mail_client_hands_over(shop: Shop, form: str) -> None:
    """The List-Unsubscribe mailto link itself, and its subject as a reply or a forward carries it
    ("Re:", "AW: Fwd:", a spam filter's tag): each was refused as a malformed token."""
    result = shop.cli("unsubscribe", form.format(token=make_token("ann@example.com", SECRET)), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json == {"email": "ann@example.com", "phone": None, "added": True, "warnings": []}


def test_a_mailto_subject_with_an_altered_token_is_still_refused(shop: Shop) -> None:
    token = make_token("ann@example.com", SECRET)
    altered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    result = shop.cli("unsubscribe", f"mailto:u@shop.example.com?subject=unsubscribe%20{altered}", now=None)
    assert result.exit_code == 2 and "refused" in result.stderr
    assert shop.suppression("ann@example.com") is None


@pytest.mark.parametrize("path", ["/unsubscribe?token=not.valid", "/cart-survey?token=s.not.valid"])
def test_a_head_request_gets_no_body_even_when_refused(shop: Shop, path: str) -> None:
    """RFC 9110: a response to HEAD has no content; a refused token's page was sent after the headers."""
    import socket

    with webhook(shop) as base:
        host, port = urlsplit(base).hostname, urlsplit(base).port
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(f"HEAD {path} HTTP/1.0\r\nHost: shop.example.com\r\n\r\n".encode())
            raw = b""
            while chunk := conn.recv(65536):
                raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400") and b"Content-Length: " in head
    assert body == b""


def test_suppress_list_json_gives_times_in_iso_8601_as_the_runs_document_does(shop: Shop) -> None:
    assert shop.cli("unsubscribe", "ann@example.com", now=None).exit_code == 0
    (row,) = shop.cli("suppress", "list", "--json", now=None).json["suppressions"]
    assert "T" in row["created_at"] and row["created_at"].endswith("Z")
    assert datetime.fromisoformat(row["created_at"].replace("Z", "+00:00")).tzinfo is not None


def test_suppress_list_email_of_what_is_no_address_is_a_usage_error_not_not_suppressed(shop: Shop) -> None:
    result = shop.cli("suppress", "list", "--email", "bob at example", "--json", now=None)
    assert result.exit_code == 2 and "not a valid e-mail address or phone number" in result.json["error"]["message"]


@pytest.mark.parametrize("breakage", ["missing", "yaml", "no_secret"])
def test_the_webhook_server_names_a_config_error_in_one_line(shop: Shop, breakage: str) -> None:
    """``python -m cartrescue.webhook`` (docs/sending.md) printed a traceback for a config error
    that ``cartrescue run`` gives in one line naming the file (exit 2)."""
    import subprocess
    import sys

    config = shop.config_path
    if breakage == "missing":
        config = shop.folder / "nowhere.yaml"
    elif breakage == "yaml":
        config.write_text("shop: [unclosed\n", encoding="utf-8")
    else:
        shop.configure(shop={"unsubscribe_secret": ""})
        shop.write()
    done = subprocess.run([sys.executable, "-m", "cartrescue.webhook", "--config", str(config), "--port", "0"],
                          cwd=shop.folder, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and config.name in lines[0], done.stderr
    if breakage == "no_secret":
        assert "shop.unsubscribe_secret: empty" in lines[0]


def test_the_webhook_server_on_a_port_in_use_says_so_in_one_line(shop: Shop) -> None:
    """A second ``python -m cartrescue.webhook`` on the port of a running one (or of any other
    server) printed wsgiref's traceback, ``OSError: [Errno 98] Address already in use``; it is
    one line naming the address and ``--port``, exit 2, as a config error is."""
    import socket
    import subprocess
    import sys

    shop.write()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "cartrescue.webhook", "--config", str(shop.config_path),
                               "--port", str(port)], cwd=shop.folder, capture_output=True, text=True, timeout=60,
                              check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port} (--host, --port): "), line


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_the_webhook_server_refuses_a_port_out_of_range_in_one_line(shop: Shop, port: str) -> None:
    """``python -m cartrescue.webhook --port 70000`` (a mistyped port) printed socketserver's
    traceback, ``OverflowError: bind(): port must be 0-65535``, exit 1; it is a usage error
    naming ``--port`` and the range, exit 2, as the README's table has it."""
    import subprocess
    import sys

    shop.write()
    done = subprocess.run([sys.executable, "-m", "cartrescue.webhook", "--config", str(shop.config_path),
                           "--port", port], cwd=shop.folder, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "--port" in done.stderr and "0 to 65535" in done.stderr, done.stderr


def test_the_webhook_servers_help_names_the_command_and_each_options_default() -> None:
    """``python -m cartrescue.webhook --help`` said ``usage: webhook.py`` and listed ``--config``,
    ``--host`` and ``--port`` with no word on what they are or their defaults, which
    docs/sending.md leaves to it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "cartrescue.webhook", "--help"], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m cartrescue.webhook"), done.stdout
    assert "cartrescue.yaml" in done.stdout and "127.0.0.1" in done.stdout and "8025" in done.stdout


def test_the_webhook_server_answers_while_another_connection_sends_nothing(shop: Shop) -> None:
    """``python -m cartrescue.webhook`` served one connection at a time: a connection that sent
    nothing yet (a browser's preconnection, a stalled client) or half a request held up every
    other request, a mail client's one-click POST included, for as long as it stayed open."""
    import socket
    import subprocess
    import sys

    shop.write()
    token = make_token("ann@example.com", SECRET)
    server = subprocess.Popen([sys.executable, "-m", "cartrescue.webhook", "--config", str(shop.config_path),
                               "--port", "0"], cwd=shop.folder, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)  # type: ignore[union-attr]
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as idle, \
                socket.create_connection(("127.0.0.1", port)) as half:
            half.sendall(b"POST /unsubscribe HTTP/1.1\r\nHost: shop.example.com\r\n")
            time.sleep(0.2)  # both taken by the server before the request below
            status, page = http(f"{base}/unsubscribe?token={token}", b"List-Unsubscribe=One-Click")
            assert status == 200 and "ann@example.com" in page
            assert idle.fileno() != -1
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert shop.suppression("ann@example.com") is not None


@pytest.mark.slow
def test_the_webhook_server_takes_a_burst_of_one_click_posts_without_resetting_any(shop: Shop) -> None:
    """``python -m cartrescue.webhook`` listened with socketserver's backlog of 5: the one-click
    POSTs of a burst (a mailing's recipients pressing Unsubscribe together, a proxy opening
    connections at once) that came while the server was busy were reset, and those unsubscribes
    were lost. The burst here comes while the server is held (SIGSTOP), as a busy server is."""
    import concurrent.futures
    import signal
    import subprocess
    import sys

    shop.write()
    addresses = [f"burst{n}@example.com" for n in range(40)]
    server = subprocess.Popen([sys.executable, "-m", "cartrescue.webhook", "--config", str(shop.config_path),
                               "--port", "0"], cwd=shop.folder, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        base = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)  # type: ignore[union-attr]
        assert http(f"{base}/unsubscribe?token={make_token('warm@example.com', SECRET)}",
                    b"List-Unsubscribe=One-Click")[0] == 200  # the ledger opened before the burst
        os.kill(server.pid, signal.SIGSTOP)
        try:
            with concurrent.futures.ThreadPoolExecutor(len(addresses)) as pool:
                def one_click(address: str) -> int | str:
                    try:
                        return http(f"{base}/unsubscribe?token={make_token(address, SECRET)}",
                                    b"List-Unsubscribe=One-Click")[0]
                    except OSError as error:
                        return f"{type(error).__name__}: {error}"
                answers = [pool.submit(one_click, address) for address in addresses]
                time.sleep(1.0)  # every connection is queued before the server takes the first
                os.kill(server.pid, signal.SIGCONT)
                statuses = [answer.result() for answer in answers]
        finally:
            os.kill(server.pid, signal.SIGCONT)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert statuses == [200] * len(addresses), statuses
    assert all(shop.suppression(address) is not None for address in addresses)


def _one_click_log(shop: Shop, address: str) -> str:
    """The log (stderr) of ``python -m cartrescue.webhook`` for the shop, started, sent one
    one-click POST for ``address`` (answered 200), and stopped."""
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-m", "cartrescue.webhook", "--config", str(shop.config_path),
                               "--port", "0"], cwd=shop.folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        base = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)  # type: ignore[union-attr]
        token = make_token(address, SECRET)
        assert http(f"{base}/unsubscribe?token={token}", b"List-Unsubscribe=One-Click")[0] == 200
    finally:
        server.terminate()
        _out, log = server.communicate(timeout=10)
    return log


def test_the_webhook_server_warns_when_its_ledger_file_is_not_there(shop: Shop) -> None:
    """``python -m cartrescue.webhook`` with a ``ledger.url`` naming no file (a mistyped path, a
    config other than the runs') made a new, empty ledger in silence and told each customer "you
    are unsubscribed", while the runs read their own ledger and kept reminding them. It now says
    so when it starts, and in its log when it makes the file; ``unsubscribe`` says the same."""
    shop.configure(ledger={"url": "sqlite:///ledgr.db"})
    shop.write()
    log = _one_click_log(shop, "ann@example.com")
    new = str(shop.folder / "ledgr.db")
    lines = [line for line in log.splitlines() if new in line]
    assert len(lines) == 2, log
    assert lines[0].startswith(f"warning: {shop.config_path}: ledger.url: no ledger is at {new}"), log
    assert lines[1].startswith("cartrescue.webhook: warning: "), log
    assert "only runs whose ledger.url names this file" in lines[0], log


def test_the_webhook_server_says_nothing_of_a_ledger_that_is_there(shop: Shop) -> None:
    """The warning above is for a missing file only: a shop's running server with its ledger in
    place starts with its one line, and its log has no warning."""
    shop.write()
    assert shop.cli("unsubscribe", "bob@example.com", now=None).exit_code == 0  # the ledger, made before
    log = _one_click_log(shop, "ann@example.com")
    assert "warning" not in log, log
    assert shop.suppression("ann@example.com") is not None


def test_the_webhook_server_listens_on_an_ipv6_loopback(shop: Shop) -> None:
    """``python -m cartrescue.webhook --host ::1`` (a proxy on this machine that connects to
    ``[::1]``) refused to start: ``error: cannot listen on ::1:8025 (--host, --port): Address
    family for hostname not supported``. It now listens there and says where, as a URL writes it."""
    import socket
    import subprocess
    import sys

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        pytest.skip(f"no IPv6 loopback on this machine: {error}")
    shop.write()
    server = subprocess.Popen([sys.executable, "-m", "cartrescue.webhook", "--config", str(shop.config_path),
                               "--host", "::1", "--port", "0"], cwd=shop.folder, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        said = server.stdout.readline()
        found = re.search(r"http://\[::1\]:\d+", said)
        if found is None:
            server.wait(timeout=10)
            pytest.fail(f"not listening: {said!r} {server.stderr.read()!r}")  # type: ignore[union-attr]
        token = make_token("ann@example.com", SECRET)
        assert http(f"{found.group(0)}/unsubscribe?token={token}", b"List-Unsubscribe=One-Click")[0] == 200
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert shop.suppression("ann@example.com") is not None


def test_the_webhook_server_closes_a_silent_connection_in_one_log_line(shop: Shop) -> None:
    """A connection that sends nothing is closed after ``IDLE_TIMEOUT`` (its thread freed), and
    the log says so in one line, not socketserver's traceback of a ``TimeoutError``."""
    import socket
    import subprocess
    import sys

    shop.write()
    run = ("import sys, cartrescue.webhook as w; w.IDLE_TIMEOUT = 0.5; "
           "w.main(['--config', sys.argv[1], '--port', '0'])")
    server = subprocess.Popen([sys.executable, "-c", run, str(shop.config_path)], cwd=shop.folder,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(re.search(r":(\d+)/", server.stdout.readline()).group(1))  # type: ignore[union-attr]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            assert idle.recv(10) == b""  # closed by the server
    finally:
        server.terminate()
        _out, log = server.communicate(timeout=10)
    assert "Traceback" not in log, log
    assert len([line for line in log.splitlines() if "timed out" in line]) == 1, log


def _texting_shop(shop: Shop) -> Shop:
    """A Swedish shop whose carts get text messages: three carts, 070-123 45 00 to 02."""
    from test_sms_channel import sms_shop

    return sms_shop(shop, "http://127.0.0.1:9")  # `carts` decides; nothing is sent


def test_suppress_import_of_a_list_of_numbers_stops_their_text_messages(shop: Shop, tmp_path: Path) -> None:
    """The opt-outs of the shop's former SMS tool (numbers, international or as the shop's
    country writes them) were every one "not an e-mail address": nobody on the list was
    suppressed, and the next run texted the people who had replied STOP."""
    _texting_shop(shop)
    export = tmp_path / "sms-optouts.csv"
    export.write_text("Phone Number,Opted out\n+46701234500,2026-01-01\n070-123 45 01,2026-01-02\n"
                      "12345,2026-01-03\n", encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 1, result.output  # one invalid entry
    assert (result.json["added"], result.json["invalid"]) == (2, [{"where": "sms-optouts.csv:4", "value": "12345"}])
    decisions = shop.decisions()
    assert {key: decisions[key]["reason"] for key in ("s000", "s001", "s002")} == {
        "s000": "suppressed", "s001": "suppressed", "s002": "due"}
    assert shop.cli("suppress", "list", "--email", "+46701234501", now=None).exit_code == 0


def test_suppress_import_of_an_export_with_both_columns_takes_the_number_of_a_row_without_an_address(
        shop: Shop, tmp_path: Path) -> None:
    """Klaviyo's suppression export has an e-mail and a phone column, and an SMS opt-out's row has
    no address: it was "not an e-mail address or phone number: ''" (exit 1) and the person who
    had replied STOP to the old tool got the next text."""
    _texting_shop(shop)
    export = tmp_path / "klaviyo-suppressions.csv"
    export.write_text("Email,Phone Number,First Name,Suppression Reason,Suppression Date\r\n"
                      "ann@example.com,+46701234501,Ann,Unsubscribed,2026-10-01\r\n"
                      ",+46701234500,,SMS Unsubscribed,2026-10-02\r\n", encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert (result.json["added"], result.json["invalid"]) == (2, [])
    decisions = shop.decisions()
    assert {key: decisions[key]["reason"] for key in ("s000", "s001")} == {"s000": "suppressed", "s001": "due"}


def test_suppress_import_of_numbers_without_a_header_keeps_the_first_line(shop: Shop, tmp_path: Path) -> None:
    """A CSV's first row without an ``@`` was taken for its header: the first number of a list
    without one was dropped without a word."""
    _texting_shop(shop)
    export = tmp_path / "stops.csv"
    export.write_text("+46701234500;STOP\n+46701234501;STOP\n", encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["added"] == 2
    assert shop.decisions()["s000"]["reason"] == "suppressed"


def test_cli_unsubscribe_takes_a_phone_number(shop: Shop) -> None:
    """A customer who asks on the phone not to be texted again: `unsubscribe 070-…` was refused
    as a "malformed unsubscribe token", and only `forget` could stop the texts."""
    _texting_shop(shop)
    result = shop.cli("unsubscribe", "070-123 45 02", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json == {"email": None, "phone": "+46701234502", "added": True, "warnings": []}
    assert shop.decisions()["s002"]["reason"] == "suppressed"
    listed = shop.cli("suppress", "list", "--email", "+46701234502", "--json", now=None).json["suppressions"]
    assert [(row["reason"], row["source"]) for row in listed] == [("unsubscribed", "cli (number)")]
    invalid = shop.cli("unsubscribe", "070-12", "--json", now=None)
    assert invalid.exit_code == 2 and "not a valid phone number" in invalid.json["error"]["message"]


def test_cli_unsubscribe_takes_a_number_as_the_call_list_writes_it(shop: Shop) -> None:
    """Staff copy the number from the call list's cell, where a shop without ``shop.country``
    has it behind the apostrophe that keeps a spreadsheet from running it (``'+46 70 …``): it
    was refused as a "malformed unsubscribe token", though the import and ``forget`` take it."""
    _texting_shop(shop)
    result = shop.cli("unsubscribe", "'+46 70 123 45 02", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["phone"] == "+46701234502"


def test_cli_unsubscribe_takes_a_number_written_with_a_typographic_dash(shop: Shop) -> None:
    """A number copied from a web page, an order confirmation or a word processor has an en dash
    or a non-breaking hyphen (``070–123 45 02``), which the cart reader reads as the number: it
    was refused as a "malformed unsubscribe token"."""
    _texting_shop(shop)
    for written in ("070\u2013123 45 02", "070\u2011123 45 02"):
        result = shop.cli("unsubscribe", written, "--json", now=None)
        assert result.exit_code == 0, result.output
        assert result.json["phone"] == "+46701234502"


def test_cli_unsubscribe_takes_a_tel_link(shop: Shop) -> None:
    """A number copied from a ``tel:`` link (a CRM, the shop's admin) is the number, as a cart's
    ``tel:`` cell is: it was refused as a "malformed unsubscribe token"."""
    _texting_shop(shop)
    result = shop.cli("unsubscribe", "tel:+46701234502", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["phone"] == "+46701234502"


def test_suppress_remove_of_a_number_names_it_as_unsubscribe_does(shop: Shop) -> None:
    """``unsubscribe`` answers a number with ``{"email": null, "phone": "+46..."}``; ``suppress
    remove`` gave the number as staff typed it, under ``email`` (``"'+46 70 ..."`` from the call
    list's cell): a script lifting the suppressions it had made found a number it never set."""
    _texting_shop(shop)
    assert shop.cli("unsubscribe", "+46701234502", now=None).exit_code == 0
    removed = shop.cli("suppress", "remove", "'+46 70 123 45 02", "--json", now=None)
    assert removed.exit_code == 0, removed.output
    assert removed.json == {"email": None, "phone": "+46701234502", "removed": True, "warnings": []}


def test_suppress_list_names_its_hash_column_for_a_number_too(shop: Shop) -> None:
    """A number's suppression is listed under ``email_hash`` ("address hash" in the table), as
    if it were an address's: the column is the contact's hash, ``contact_hash`` in ``--json``
    (``email_hash``, the same hash, stays for the scripts that read it)."""
    from cartrescue.contacts import phone_hash

    _texting_shop(shop)
    assert shop.cli("unsubscribe", "070-123 45 02", now=None).exit_code == 0
    (row,) = shop.cli("suppress", "list", "--email", "+46701234502", "--json", now=None).json["suppressions"]
    assert row["contact_hash"] == row["email_hash"] == phone_hash("+46701234502")
    table = shop.cli("suppress", "list", "--wide", now=None).stdout
    assert "contact hash" in table and "address hash" not in table, table


@pytest.mark.parametrize("written", ["Ann Tester <Ann@Example.com>", '"Tester, Ann" <ann@example.com>',
                                     "<ann@example.com>"])
def test_cli_unsubscribe_takes_an_address_as_a_mail_clients_from_line_writes_it(shop: Shop, written: str) -> None:
    """A customer writes "please stop", and the owner pastes the sender as the mail shows it:
    it was refused as a "malformed unsubscribe token", and the customer got the next reminder."""
    result = shop.cli("unsubscribe", written, "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["email"] == "ann@example.com" and result.json["added"] is True
    assert shop.suppression("ann@example.com")["reason"] == "unsubscribed"


def test_suppress_import_reads_addresses_written_with_a_name_or_in_angle_brackets(shop: Shop, tmp_path: Path) -> None:
    """A list copied from a mail client or a bounce report (``Ann Tester <ann@…>``, ``<bob@…>``):
    every such entry was "not an e-mail address", and nobody on it was suppressed."""
    export = tmp_path / "complaints.txt"
    export.write_text("Ann Tester <ann@example.com>\n<Bob@Example.com>\n", encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert (result.json["added"], result.json["invalid"]) == (2, [])
    assert shop.suppression("ann@example.com") is not None and shop.suppression("bob@example.com") is not None


def test_suppress_import_of_a_shopify_customers_export_suppresses_only_those_who_declined(
        shop: Shop, tmp_path: Path) -> None:
    """Shopify's customers export lists every customer, with ``Accepts Email Marketing`` yes or no:
    imported, each of them was suppressed, and the customers who had agreed to marketing never got
    a reminder again."""
    export = tmp_path / "customers_export.csv"
    export.write_text("Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,"
                      "Phone,Accepts SMS Marketing,Total Spent,Total Orders,Note,Tax Exempt,Tags\n"
                      "123,Ann,Tester,ann@example.com,no,,,no,10.00,1,,no,\n"
                      "124,Bob,Tester,bob@example.com,yes,,,no,0.00,0,,no,\n", encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert (result.json["added"], result.json["invalid"]) == (1, [])
    assert shop.suppression("ann@example.com") is not None
    assert shop.suppression("bob@example.com") is None


def test_suppress_import_of_a_shopify_customers_export_skips_the_numbers_that_accept_texts(
        shop: Shop, tmp_path: Path) -> None:
    """A customer with only a phone number is imported by it; ``Accepts SMS Marketing`` yes was
    suppressed all the same, and the customer who had agreed to texts got none."""
    export = tmp_path / "customers_export.csv"
    export.write_text("Customer ID,First Name,Email,Accepts Email Marketing,Phone,Accepts SMS Marketing\n"
                      "125,Carl,,no,+46701234500,yes\n"
                      "126,Dora,,no,+46701234501,no\n", encoding="utf-8")
    assert shop.cli("suppress", "import", str(export), now=None).exit_code == 0
    listed = {number: shop.cli("suppress", "list", "--email", number, now=None).exit_code
              for number in ("+46701234500", "+46701234501")}
    assert listed == {"+46701234500": 1, "+46701234501": 0}  # exit 1: not suppressed


def _imported(shop: Shop, path: Path, text: str) -> tuple[int, list[object]]:
    """``suppress import`` of ``text`` written at ``path``, which must exit 0: (added, invalid)."""
    path.write_text(text, encoding="utf-8")
    result = shop.cli("suppress", "import", str(path), "--json", now=None)
    assert result.exit_code == 0, result.output
    return result.json["added"], result.json["invalid"]


def test_suppress_import_of_a_customers_export_passes_over_a_customer_without_address_or_number(
        shop: Shop, tmp_path: Path) -> None:
    """A customer the shop knows by name alone (a sale at the till) is in Shopify's customers export
    with neither an address nor a number: there is no one to suppress, yet the import reported the
    row "not an e-mail address or phone number: ''" and exited 1, each time the export was imported."""
    assert _imported(shop, tmp_path / "customers_export.csv",
                     "Customer ID,First Name,Email,Accepts Email Marketing,Phone,Accepts SMS Marketing\n"
                     "127,Erik,,no,,no\n"
                     "128,Fay,fay@example.com,no,,no\n") == (1, [])


def test_suppress_import_reads_the_header_below_excels_sep_line(shop: Shop, tmp_path: Path) -> None:
    """A list saved for Excel starts with ``sep=;``, the line that names its delimiter: read as the
    header, the real header became an invalid entry (exit 1) and its consent column went unread,
    so the customer who had said yes to marketing was suppressed, never reminded again."""
    assert _imported(shop, tmp_path / "customers_export.csv",
                     "sep=;\r\nEmail;Accepts Email Marketing\r\n"
                     "yes@example.com;yes\r\nno@example.com;no\r\n") == (1, [])
    assert shop.suppression("yes@example.com") is None and shop.suppression("no@example.com") is not None


def test_suppress_import_reads_a_gateways_number_without_its_plus_as_a_stop_reply_is_read(
        shop: Shop, tmp_path: Path) -> None:
    """SMS gateways write a number without its ``+`` (``4791234567``), in their opt-out exports as
    in the STOP replies they forward: the reply was read so, but the import reported each such
    number of the gateway's list invalid (exit 1), and those who had said STOP were texted again."""
    assert _imported(shop, tmp_path / "sms-optouts.csv",
                     "phone_number,opted_out_at\n4791234567,2026-11-01\n") == (1, [])
    assert shop.cli("suppress", "list", "--email", "+4791234567", now=None).exit_code == 0


def test_suppress_import_reads_a_tel_link_as_its_number(shop: Shop, tmp_path: Path) -> None:
    """A CRM's export of opt-outs writes the number as a ``tel:`` link, as a cart's cell may be:
    the cart reader dials and texts that number, but the import reported it "not an e-mail
    address or phone number" (exit 1), and the person who had opted out got the next text."""
    export = tmp_path / "sms-optouts.csv"
    export.write_text("phone\ntel:+46701234500\n", encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert (result.json["added"], result.json["invalid"]) == (1, [])


def test_suppress_import_reads_a_number_behind_a_spreadsheets_apostrophe(shop: Shop, tmp_path: Path) -> None:
    """Shopify's exports (and a spreadsheet that kept a number as text) write ``'+46701234500``:
    the cart reader takes that number, but the import reported it "not an e-mail address or phone
    number" (exit 1) and the person who had opted out of texts got the next one."""
    export = tmp_path / "sms-optouts.csv"
    export.write_text("Email,Phone\n,'+46701234500\n", encoding="utf-8")
    result = shop.cli("suppress", "import", str(export), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert (result.json["added"], result.json["invalid"]) == (1, [])
    assert shop.cli("suppress", "list", "--email", "+46701234500", now=None).exit_code == 0


def test_unsubscribing_an_address_suppressed_for_another_reason_says_which(shop: Shop) -> None:
    """An address ``forget`` erased was answered "already unsubscribed": the owner read it as the
    customer's own opt-out, while the ledger keeps it as an erasure (or a bounce)."""
    shop.add(cart("c1", email="ann@example.com"))
    assert shop.cli("forget", "ann@example.com", now=None).exit_code == 0
    done = shop.cli("unsubscribe", "ann@example.com", now=None)
    assert done.exit_code == 0, done.output
    assert "ann@example.com: already suppressed (forgotten)" in done.stderr, done.stderr
    assert shop.cli("unsubscribe", "bo@example.com", now=None).exit_code == 0
    again = shop.cli("unsubscribe", "bo@example.com", now=None)
    assert "bo@example.com: already unsubscribed" in again.stderr, again.stderr
