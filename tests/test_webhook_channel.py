"""The webhook channel against a real HTTP receiver on loopback that verifies every signature.

The receiver is written as docs/channels.md tells shops to write one: HMAC of timestamp + body
under the shared secret, a five-minute window, and a repeated Idempotency-Key dropped.
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from httpserver import Answer, LoopbackHTTP, WebhookReceiver

from cartrescue.signing import BadSignature, sign, verify
from conftest import NOW, REPO, Shop, cart, in_shard

SECRET = "whsec-" + "k" * 30


def webhook_shop(shop: Shop, url: str, carts: int = 3, **webhook: Any) -> Shop:
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                   webhook={"url": url, "secret": SECRET, "backoff": "0.05s", **webhook})
    shop.add(*(cart(f"w{n:03d}") for n in range(carts)))
    return shop


def rows(shop: Shop) -> list[dict[str, Any]]:
    return shop.messages()


def start_run(shop: Shop) -> subprocess.Popen[bytes]:
    """``run --send --json`` in its own process (a stop must reach the real command line)."""
    import sys

    from conftest import iso

    shop.write()
    return subprocess.Popen([sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--now", iso(NOW),
                             "--config", str(shop.config_path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_every_due_cart_is_posted_once_signed_and_a_rerun_posts_nothing(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url + "/hooks/cart", carts=20, concurrency=4)
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        assert result.json["counts"]["sent"] == 20
        assert len(receiver.requests) == 20 and not receiver.refused
        ledger = rows(shop)
        assert {row["message_id"].strip("<>") for row in ledger} == set(receiver.accepted)
        assert {row["transport"] for row in ledger} == {"webhook"} and {row["status"] for row in ledger} == {"sent"}
        again = shop.cli("run", "--send", "--json")
        assert again.json["counts"]["sent"] == 0 and len(receiver.requests) == 20


def test_the_document_carries_cart_customer_step_and_the_rendered_parts(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1)
        shop.configure(sequences={"default": {"steps": [{
            "delay": "1h", "template": "reminder-3",
            "incentive": {"kind": "percent", "value": 10, "code": "COMEBACK10"}}]}})
        assert shop.cli("run", "--send").exit_code == 0
        (request,) = receiver.requests
        document = request.json
        (row,) = rows(shop)
        assert document["id"] == row["id"] and request.headers["idempotency-key"] == row["message_id"].strip("<>")
        assert document["event"] == "cart.reminder" and document["message_id"] == row["message_id"]
        assert document["cart"]["id"] == "w000" and document["cart"]["items"][0]["name"] == "Blue mug"
        assert document["customer"]["email"] == "w000@example.com" and document["customer"]["first_name"] == "Ann"
        assert (document["step"], document["step_count"], document["tier"], document["locale"]) == (1, 1, "standard", "en")
        assert document["incentive"]["code"] == "COMEBACK10" and document["incentive"]["kind"] == "percent"
        # The end of the shop's day that the message names ("valid until 23 November"), as the codes have it.
        assert document["incentive"]["expires_at"] == "2026-11-23T23:00:00Z" and "November 23" in document["text"]
        assert "COMEBACK10" in document["text"] and "<html" in document["html"] and document["subject"]
        assert document["unsubscribe_url"].startswith("https://shop.example.com/unsubscribe?token=")
        assert request.headers["content-type"] == "application/json"


def test_the_documents_phone_is_e164_as_the_cart_wrote_it_in_the_shops_country(shop: Shop) -> None:
    """A messenger bot (WhatsApp Business) needs the number with its country code: a shop
    without SMS posted ``070-123 45 67`` as the cart had it, which no messenger API takes. What
    is no valid number is posted as the cart has it."""
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=0)
        shop.configure(shop={"country": "SE"})
        shop.add(cart("p1", phone="070-123 45 67"), cart("p2", phone="+46 (0)8 123 456 78"), cart("p3", phone="12345"))
        assert shop.cli("run", "--send").exit_code == 0
        phones = {request.json["cart"]["id"]: request.json["customer"]["phone"] for request in receiver.requests}
        assert phones == {"p1": "+46701234567", "p2": "+46812345678", "p3": "12345"}


def test_the_documents_recovery_url_is_the_link_its_message_gives(shop: Shop) -> None:
    """A cart whose link is no http(s) one (``javascript:…``) or none: its message links to the
    shop, but the document posted the cart's value as it came, a script link (or null) for the
    receiver's messenger text or staff channel to show."""
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=0)
        scripted, bare, own = cart("p1"), cart("p2"), cart("p3")
        scripted[0]["recovery_url"], bare[0]["recovery_url"] = "javascript:alert(1)", ""
        shop.add(scripted, bare, own)
        assert shop.cli("run", "--send").exit_code == 0
        links = {request.json["cart"]["id"]: request.json["cart"]["recovery_url"] for request in receiver.requests}
        assert links == {"p1": "https://shop.example.com", "p2": "https://shop.example.com",
                         "p3": "https://shop.example.com/cart/p3"}
        assert all("javascript:" not in request.json["text"] for request in receiver.requests)


def test_an_items_link_that_is_no_http_link_is_posted_as_none(shop: Shop) -> None:
    """The message leaves out an item's image or product link that is no http(s) one; the
    document posted it as the export had it (``javascript:…``)."""
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=0)
        rows = cart("p1", items=[("SKU-1", "Blue mug", 1, "25.00"), ("SKU-2", "Lamp", 1, "40.00")])
        rows[0].update(image_url="javascript:alert(1)", product_url=" https://shop.example.com/p/mug ")
        rows[1].update(image_url="https://shop.example.com/i/lamp.jpg", product_url="data:text/html,<script>x</script>")
        shop.add(rows)
        assert shop.cli("run", "--send").exit_code == 0
        (request,) = receiver.requests
        assert [(item["image_url"], item["product_url"]) for item in request.json["cart"]["items"]] == [
            (None, "https://shop.example.com/p/mug"), ("https://shop.example.com/i/lamp.jpg", None)]


def test_two_shops_posting_to_one_receiver_never_send_the_same_key(tmp_path: Path) -> None:
    """An agency's shops, each with its own ledger, post to one automation endpoint: the key was
    the ledger id, counted from 1 in each ledger, so the receiver took the second shop's
    messages for repeats of the first's and dropped them (each recorded ``sent``)."""
    with WebhookReceiver(SECRET) as receiver:
        for name in ("North Shop", "South Shop"):
            (tmp_path / name).mkdir()
            one = webhook_shop(Shop(tmp_path / name), receiver.url, carts=3)
            one.configure(shop={"name": name})
            result = one.cli("run", "--send", "--json")
            assert result.exit_code == 0 and result.json["counts"]["sent"] == 3, result.output
        assert len(receiver.requests) == 6 and not receiver.replayed
        assert len(receiver.accepted) == 6


def test_429_with_retry_after_and_503_are_retried_and_land_once(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1)
        receiver.plan(Answer(429, b"slow down", {"Retry-After": "1"}), Answer(503, b"maintenance"))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        assert len(receiver.requests) == 3 and len(receiver.accepted) == 1
        assert receiver.requests[1].at - receiver.requests[0].at >= 0.95  # Retry-After: 1 was honoured
        keys = {r.headers["idempotency-key"] for r in receiver.requests}
        assert len(keys) == 1  # the same key on every attempt
        assert [row["status"] for row in rows(shop)] == ["sent"]


def test_a_retry_after_in_other_digits_is_no_delay_and_costs_nothing(shop: Shop) -> None:
    """``Retry-After: ²`` (a digit to str.isdigit, not to float) from a receiver ended the run
    as an internal error."""
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1)
        receiver.plan(Answer(429, b"slow down", {"Retry-After": "\u00b2"}))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        assert len(receiver.requests) == 2 and len(receiver.accepted) == 1
        assert [row["status"] for row in rows(shop)] == ["sent"]


def test_a_cookie_the_receiver_sets_is_never_sent_back(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url + "/hooks/cart", carts=4, concurrency=1)
        receiver.plan(Answer(200, b"{}", {"Set-Cookie": "session=abc123; Path=/"}))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        assert result.json["counts"]["sent"] == 4 and len(receiver.requests) == 4
        assert "session=abc123" not in str([r.headers for r in receiver.requests])
        assert not [r for r in receiver.requests if "cookie" in {k.lower() for k in r.headers}]


def test_an_answer_slower_than_the_timeout_is_given_up_and_the_request_sent_again(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url + "/hooks/cart", carts=1, concurrency=1, timeout="0.3s")
        receiver.plan(Answer(200, delay=2.0, process=True))
        started = time.monotonic()
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        assert result.json["counts"]["sent"] == 1
        assert len(receiver.requests) == 2 and len(receiver.accepted) == 1  # the repeat dropped by its key
        assert time.monotonic() - started < 10


def test_an_answer_trickled_past_the_timeout_is_given_up_and_the_request_sent_again(shop: Shop) -> None:
    """httpx's timeout bounds each read: a receiver that sends its answer a byte at a time held
    the request (and the run) until it was done, whatever ``webhook.timeout`` said."""
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1, concurrency=1, timeout="0.5s")
        receiver.plan(Answer(200, trickle=0.4, process=True))  # its 12 bytes take ~5 s
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        assert result.json["counts"]["sent"] == 1
        assert len(receiver.requests) == 2 and len(receiver.accepted) == 1  # the repeat dropped by its key
        assert [row["status"] for row in rows(shop)] == ["sent"]


def test_user_info_in_the_url_is_sent_as_basic_auth_and_never_shown(shop: Shop) -> None:
    """``https://user:pass@host/hook`` (an n8n or Node-RED webhook behind basic auth): the
    requests went out without the credentials, and the receiver refused every message."""
    import base64

    with WebhookReceiver(SECRET) as receiver:
        url = receiver.url.replace("http://", "http://cart%40bot:s3cr%3At-pw@") + "/hook"
        webhook_shop(shop, url, carts=2)
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0 and result.json["counts"]["sent"] == 2, result.output
        expected = "Basic " + base64.b64encode(b"cart@bot:s3cr:t-pw").decode()
        assert [r.headers.get("authorization") for r in receiver.requests] == [expected, expected]
        assert {r.path for r in receiver.requests} == {"/hook"}
        assert "s3cr" not in result.output and not [row for row in rows(shop) if "s3cr" in (row["reply"] or "")]


def test_a_400_is_recorded_permanent_and_not_retried(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1)
        receiver.plan(Answer(400, b'{"error": "unknown customer"}'))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 1 and result.json["counts"]["failed"] == 1
        assert len(receiver.requests) == 1
        (row,) = rows(shop)
        assert row["status"] == "failed_permanent" and row["reply"].startswith("400 Bad Request")
        assert shop.cli("run", "--send", "--json").json["counts"]["sent"] == 0 and len(receiver.requests) == 1


def test_an_answer_lost_on_the_way_is_sent_again_and_the_receiver_drops_the_repeat(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1)
        receiver.plan(Answer(0, process=True, drop=True))  # taken, then the connection closes unanswered
        assert shop.cli("run", "--send").exit_code == 0
        assert len(receiver.requests) == 2 and len(receiver.accepted) == 1
        assert [row["status"] for row in rows(shop)] == ["sent"]


def test_a_post_left_unanswered_says_so_in_plain_words(shop: Shop) -> None:
    """The reply read "no answer lost: ...", which says the opposite of what happened."""
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1, retries=0)
        receiver.plan(Answer(0, process=True, drop=True))  # taken, then the connection closes unanswered
        assert shop.cli("run", "--send").exit_code == 1
        (row,) = rows(shop)
        assert row["status"] == "failed_transient"
        assert row["reply"].startswith("the request went out but no answer came back: "), row["reply"]
        assert "lost" not in row["reply"]


def test_a_redirect_to_another_host_is_not_followed(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as elsewhere, LoopbackHTTP() as first:
        webhook_shop(shop, first.url + "/hook", carts=3, concurrency=1)
        first.plan(*(Answer(307, headers={"Location": elsewhere.url.replace("127.0.0.1", "localhost") + "/x"})
                     for _ in range(3)))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 1
        assert elsewhere.requests == [] and len(first.requests) == 1  # the rest not attempted
        assert {row["status"] for row in rows(shop)} == {"failed_transient"}
        assert "not followed" in rows(shop)[0]["reply"]


def test_a_307_on_the_same_host_is_followed_with_the_same_body(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url + "/old", carts=1)
        receiver.plan(Answer(308, headers={"Location": "/new"}))
        assert shop.cli("run", "--send").exit_code == 0
        assert [r.path for r in receiver.requests] == ["/old", "/new"]
        assert receiver.requests[0].body == receiver.requests[1].body and len(receiver.accepted) == 1


def test_a_receiver_that_is_down_leaves_every_message_for_the_next_run(shop: Shop) -> None:
    with LoopbackHTTP() as probe:
        closed = probe.url  # the port is free again once the server is gone
    webhook_shop(shop, closed, carts=5, retries=0, concurrency=2)
    result = shop.cli("run", "--send", "--json")
    assert result.exit_code == 1 and result.json["counts"]["failed"] == 5
    assert {row["status"] for row in rows(shop)} == {"failed_transient"}
    port = int(closed.rsplit(":", 1)[1])
    receiver = WebhookReceiver(SECRET)
    receiver.server.server_close()
    from http.server import ThreadingHTTPServer

    try:
        receiver.server = ThreadingHTTPServer(("127.0.0.1", port), receiver.server.RequestHandlerClass)
    except OSError:
        pytest.skip("the port was taken meanwhile")
    import threading

    receiver.thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    with receiver:
        assert shop.cli("run", "--send", "--json").json["counts"]["sent"] == 5
    assert {row["status"] for row in rows(shop)} == {"sent"} and {row["attempts"] for row in rows(shop)} == {2}


def test_a_receiver_refusing_the_signature_stops_the_run_without_losing_messages(shop: Shop) -> None:
    with WebhookReceiver("another-secret-entirely") as receiver:
        webhook_shop(shop, receiver.url, carts=6, concurrency=1)
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 1
        assert len(receiver.requests) == 1  # 401: down for the run, the rest not attempted
        assert {row["status"] for row in rows(shop)} == {"failed_transient"}


def test_the_secret_never_appears_in_output_json_or_the_ledger(shop: Shop) -> None:
    with LoopbackHTTP() as hostile:
        webhook_shop(shop, hostile.url, carts=2, retries=0)
        hostile.plan(*(Answer(500, f"bad signature, expected key {SECRET}".encode()) for _ in range(2)))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 1
        assert SECRET not in result.output
        assert all(SECRET not in row["reply"] and "***" in row["reply"] for row in rows(shop))
        assert all(SECRET not in r.body.decode() and SECRET not in str(r.headers) for r in hostile.requests)


def test_sending_without_a_secret_is_a_config_error_naming_the_key(shop: Shop) -> None:
    webhook_shop(shop, "http://127.0.0.1:9/hook", carts=1)
    shop.configure(webhook={"secret": ""})
    result = shop.cli("run", "--send", "--json")
    assert result.exit_code == 2 and "webhook.secret" in result.json["error"]["message"]


def test_plain_http_to_a_remote_host_is_refused_at_load(shop: Shop) -> None:
    webhook_shop(shop, "http://hooks.example.com/cart", carts=1)
    result = shop.cli("carts", "--json")
    assert result.exit_code == 2 and "webhook.url" in result.json["error"]["message"]


def _receiver_example() -> str:
    text = (REPO / "docs" / "channels.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- receiver -->\s*```python\n(.*?)```", text, re.S)
    assert block, "docs/channels.md lost its receiver example"
    return block.group(1)


def test_the_documented_ten_line_receiver_accepts_a_real_request_and_refuses_forgeries(shop: Shop) -> None:
    code = _receiver_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 12
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/channels.md", "exec"), namespace)  # noqa: S102 - our own documentation
    accept = namespace["accept"]
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1)
        assert shop.cli("run", "--send").exit_code == 0
    (request,) = receiver.requests
    headers = {"X-Cartrescue-Signature": request.headers["x-cartrescue-signature"],
               "Idempotency-Key": request.headers["idempotency-key"]}
    seen: set[str] = set()
    assert accept(headers, request.body, SECRET, seen) is not None  # the real request
    assert accept(headers, request.body, SECRET, seen) is None  # the same again: a replay
    assert accept({**headers, "Idempotency-Key": "x"}, request.body.replace(b"w000", b"w001"), SECRET, set()) is None
    old = sign(SECRET, request.body, int(time.time()) - 3600)
    assert accept({**headers, "X-Cartrescue-Signature": old}, request.body, SECRET, set()) is None


def test_signatures_are_checked_in_constant_time_and_within_the_window() -> None:
    body = b'{"id":1}'
    header = sign(SECRET, body, 1_800_000_000)
    assert verify(SECRET, header, body, now=1_800_000_100) == 1_800_000_000
    for bad_header, bad_body, now in ((header, body + b" ", 1_800_000_100), (header, body, 1_800_000_301),
                                      ("t=1800000000", body, 1_800_000_000), ("", body, 0)):
        with pytest.raises(BadSignature):
            verify(SECRET, bad_header, bad_body, now=now)


def test_the_channel_keeps_every_step_apart_in_the_ledger(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1)
        assert shop.cli("run", "--send", now=NOW).exit_code == 0
        assert shop.cli("run", "--send", now=NOW + timedelta(days=1)).exit_code == 0
        assert sorted(doc["step"] for doc in receiver.accepted.values()) == [1, 2]
        assert [(row["step"], row["channel"]) for row in rows(shop)] == [(1, "webhook"), (2, "webhook")]


def test_the_outbox_writes_the_document_instead(shop: Shop, tmp_path: Path) -> None:
    webhook_shop(shop, "https://hooks.example.com/cart", carts=2)
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    files = sorted((tmp_path / "out").glob("*.json"))
    assert len(files) == 2 and b'"event":"cart.reminder"' in files[0].read_bytes()


def test_the_outbox_file_is_the_document_the_receiver_gets_with_its_id(shop: Shop, tmp_path: Path) -> None:
    """``run --outbox`` wrote the document without the ``"id"`` the real POST puts first, so a
    receiver tested with the files was not tested with what it gets."""
    import json

    webhook_shop(shop, "https://hooks.example.com/cart", carts=1)
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    (path,) = (tmp_path / "out").glob("*.json")
    (row,) = rows(shop)
    written = path.read_bytes()
    assert written.startswith(b'{"id":%d,' % row["id"])
    assert json.loads(written)["message_id"] == row["message_id"]


def test_the_hourly_quota_leaves_the_rest_for_a_later_run_unclaimed(shop: Shop) -> None:
    """Past the quota's room a request is deferred (``hourly_quota``) before its claim: the run
    fails nothing (it exited 1 with each one ``failed_transient``)."""
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=5, rate_per_hour=2, concurrency=1)
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0 and len(receiver.accepted) == 2, result.output
        assert [row["status"] for row in rows(shop)] == ["sent"] * 2
        waits = [row for row in result.json["decisions"] if row["reason"] == "hourly_quota"]
        assert len(waits) == 3 and all("webhook.rate_per_hour (2) reached" in row["detail"] for row in waits)
        later = shop.cli("run", "--send", "--json", now=NOW + timedelta(minutes=10))
        assert len(receiver.accepted) == 2  # the hour counts the earlier run's requests from the ledger
        assert later.exit_code == 0 and later.json["counts"]["reasons"]["hourly_quota"] == 3


def test_the_hourly_quota_is_the_endpoints_whatever_the_number_of_workers(shop: Shop) -> None:
    """Each worker took the whole hour: 6 requests of a quota of 3 under --workers 2."""
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=10, rate_per_hour=3, concurrency=1)
        result = shop.cli("run", "--send", "--json", "--workers", "2")
        assert result.exit_code == 0, result.output  # the rest wait for the hour, unclaimed: nothing failed
        assert len(receiver.accepted) == 3
        assert sorted(row["status"] for row in rows(shop)).count("sent") == 3


def test_the_hourly_quota_holds_when_shards_follow_an_unsharded_run_within_the_hour(shop: Shop) -> None:
    """Each shard counted only its own customers' requests of the hour: after an unsharded run
    had used the quota, a shard whose customers it had not reached posted its whole share."""
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=0, rate_per_hour=2, concurrency=1)
        shop.add(*(cart(f"a{n}", email=a) for n, a in enumerate(in_shard(1, 2, 2))))
        shop.cli("run", "--send", "--json")
        assert len(receiver.accepted) == 2
        shop.add(*(cart(f"b{n}", email=a) for n, a in enumerate(in_shard(2, 2, 3))))
        shop.cli("run", "--send", "--json", "--shard", "2/2", now=NOW + timedelta(minutes=10))
        assert len(receiver.accepted) == 2
        assert sorted(row["status"] for row in rows(shop)).count("sent") == 2


def test_links_in_the_document_are_tagged_as_webhook_traffic(shop: Shop) -> None:
    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=1)
        assert shop.cli("run", "--send").exit_code == 0
        (document,) = receiver.accepted.values()
        assert "utm_medium=webhook" in document["text"] and "utm_medium=webhook" in document["html"]


def test_sigterm_mid_run_records_the_requests_in_flight_and_a_rerun_posts_the_rest(shop: Shop) -> None:
    """As for SMTP (tests/test_kill_resume.py): a stopped run claims nothing more and waits for
    the answers to the requests on their way; none is left ``claimed`` without an outcome."""
    import json
    import signal

    with WebhookReceiver(SECRET) as receiver:
        webhook_shop(shop, receiver.url, carts=12, concurrency=2)
        receiver.plan(*[Answer(200, delay=0.2, process=True)] * 12)  # accepted at once, answered late
        process = start_run(shop)
        deadline = time.monotonic() + 60
        while len(receiver.accepted) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)  # two requests accepted, their answers still to come
        out, err = process.communicate(timeout=60)
        assert process.returncode == 130, err.decode()
        assert json.loads(out)["error"]["code"] == "interrupted"
        stopped = rows(shop)
        assert {row["status"] for row in stopped} <= {"sent", "failed_transient"}  # none left claimed
        assert sum(row["status"] == "sent" for row in stopped) == len(receiver.accepted) < 12

        again = shop.cli("run", "--send", "--json")
        assert again.exit_code == 0, again.output
        assert again.json["unconfirmed"] == 0
    assert len(receiver.accepted) == 12 and len(receiver.requests) == 12  # each once
    assert {row["status"] for row in rows(shop)} == {"sent"}


@pytest.mark.slow
def test_sigterm_while_the_connections_are_still_opening_leaves_every_claim_for_the_next_run(shop: Shop) -> None:
    """An endpoint that takes the TCP connection and never answers the TLS handshake (a hung
    proxy), and a stop: no byte of the requests went out, so after the grace their claims are
    ``failed_transient`` and the next run posts them. Left ``claimed``, as before, the next runs
    took them for requests that may have arrived and never sent them."""
    import json
    import signal

    from smtpserver import SilentRelay

    shop.add(*(cart(f"w{n:03d}") for n in range(3)))
    with SilentRelay() as relay:
        webhook_shop(shop, f"https://127.0.0.1:{relay.port}/hook", carts=0, concurrency=2, timeout="60s")
        process = start_run(shop)
        deadline = time.monotonic() + 60
        while len(relay.accepted) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 130, err.decode()
        assert json.loads(out)["error"]["code"] == "interrupted"
    stopped = rows(shop)
    assert len(stopped) == 2  # one a connection; the third cart was never claimed
    assert all(row["status"] == "failed_transient" and "the run was stopped" in row["reply"] for row in stopped)
    with WebhookReceiver(SECRET) as receiver:
        shop.configure(webhook={"url": receiver.url})
        again = shop.cli("run", "--send", "--json")
        assert again.exit_code == 0, again.output
        assert again.json["unconfirmed"] == 0 and len(receiver.accepted) == 3
