"""`report --html`: one self-contained page that looks right offline and fetches nothing.

Two checks that can each fail: the page's markup has no reference to anything outside it
(no src, href, url(), @import, script or link), and headless Chromium, with its network log on,
shows the page rendered (not blank) and no request from the page (a loopback server counts hits;
the same check does catch an image the page would load, see the control test).
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from cartrescue.screenshot import screenshot
from conftest import NOW, Shop
from reportdata import Row, order_row, write_ledger
from test_preview_screenshot import looks_blank, picture_stats, read_png

LATER = NOW + timedelta(days=6)


class Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (Counter,), {"hits": hits})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def seeded_report(shop: Shop, base_url: str, target: Path) -> str:
    """A report with a holdout, variants, two tiers and a week of orders; data carries URLs and markup."""
    shop.configure(shop={"logo_url": f"{base_url}/logo.png", "url": f"{base_url}/shop", "name": "Shop <b>&</b> Co"},
                   sequences={"default": {"holdout": 0.2, "steps": [
                       {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}}]}})
    rows = []
    for n in range(300):
        at = NOW - timedelta(days=n % 6, hours=n % 5)
        held = n % 5 == 0
        rows.append(Row(f"c{n}", at, held=held, variant=None if held else "ab"[n % 2],
                        tier="<script>vip</script>" if n % 7 == 0 else "standard", locale=f"{base_url}/x"))
    write_ledger(shop.folder / "ledger.db", rows)
    for n in range(0, 300, 3):
        shop.add_orders(order_row(f"o{n}", at=NOW - timedelta(days=n % 6, hours=n % 5) + timedelta(hours=3),
                                  total=f"{20 + n}.50", cart_id=f"c{n}"))
    result = shop.cli("report", "--json", "--since", "2026-11-13", "--until", "2026-11-21", "--html", str(target),
                      now=LATER)
    assert result.exit_code == 0, result.output
    assert result.json["outputs"]["html"] == str(target)
    return target.read_text(encoding="utf-8")


EXTERNAL = re.compile(r"""\b(?:src|href|srcset|poster|data|action|xlink:href)\s*=|url\s*\(|@import|<\s*(?:script|link|img|iframe|object|embed|image|use)\b""",
                      re.IGNORECASE)


def test_the_page_references_nothing_outside_itself_and_escapes_data(shop: Shop, tmp_path: Path) -> None:
    page = seeded_report(shop, "http://127.0.0.1:9", tmp_path / "report.html")
    assert EXTERNAL.findall(page) == []
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "<script>" not in page and "&lt;script&gt;vip&lt;/script&gt;" in page
    assert "Shop &lt;b&gt;&amp;&lt;/b&gt; Co" in page
    assert page.count("<svg") >= 4  # revenue by day, funnel, lift (two), conversion per step and variant
    assert "Lift against the holdout" in page and "variant b" in page


def test_the_markup_check_itself_catches_a_reference() -> None:
    for bad in ('<img src="x.png">', '<a href="https://x.example">', "<style>b{background:url(x.png)}</style>",
                '<link rel="stylesheet" href="s.css">', "<script>1</script>"):
        assert EXTERNAL.findall(bad), bad


def page_requests(net_log: Path) -> list[str]:
    """URLs the page itself asked for (its network isolation key is the file:// page), other than itself."""
    data = json.loads(net_log.read_text(encoding="utf-8"))
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    found = []
    for event in data["events"]:
        params = event.get("params") or {}
        if event["type"] == start and str(params.get("network_isolation_key", "")).startswith("file://"):
            url = str(params.get("url", ""))
            if not url.startswith("file:"):
                found.append(url)
    return found


@pytest.mark.browser
@pytest.mark.slow
def test_headless_chromium_shows_the_page_and_no_request_leaves_it(shop: Shop, tmp_path: Path, chromium: str,
                                                                   server: tuple[str, list[str]]) -> None:
    base_url, hits = server
    page = seeded_report(shop, base_url, tmp_path / "report.html")
    net_log = tmp_path / "net.json"
    shot = screenshot(page, tmp_path / "report.png", size=(1000, 1400), chromium=chromium, net_log=net_log)
    width, height, rows, bpp = read_png(shot.read_bytes())
    assert (width, height) == (1000, 1400)
    stats = picture_stats(rows, bpp)
    assert not looks_blank(stats), stats
    colours = {row[x:x + 3] for row in rows[::4] for x in range(0, len(row), bpp * 4)}
    assert bytes((0x1D, 0x4E, 0xD8)) in colours  # the charts' bars are drawn
    assert page_requests(net_log) == [] and hits == []


@pytest.mark.browser
@pytest.mark.slow
def test_the_request_check_catches_an_image_the_page_would_load(tmp_path: Path, chromium: str,
                                                                 server: tuple[str, list[str]]) -> None:
    base_url, hits = server
    net_log = tmp_path / "net.json"
    screenshot(f'<!DOCTYPE html><html><body><h1>Report</h1><img src="{base_url}/tracker.png"></body></html>',
               tmp_path / "control.png", size=(320, 240), chromium=chromium, net_log=net_log)
    assert page_requests(net_log) == [f"{base_url}/tracker.png"] and hits == ["/tracker.png"]


def test_a_funnel_without_skips_has_no_empty_skip_table(shop: Shop, tmp_path: Path) -> None:
    """Every cart of the period messaged or held out: the page showed the headers "skipped
    because | carts" over no row, a table that read as a broken one (the terminal shows none)."""
    write_ledger(shop.folder / "ledger.db", [Row("t0", NOW), Row("h0", NOW, held=True)])
    page = tmp_path / "report.html"
    result = shop.cli("report", "--since", "2026-11-19", "--until", "2026-11-21", "--html", str(page), now=LATER)
    assert result.exit_code == 0, result.output
    assert "skipped because" not in page.read_text(encoding="utf-8")
