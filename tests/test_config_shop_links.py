"""``shop.url`` and ``shop.logo_url`` are http(s) links a mail client opens, checked when the
config loads.

``url: shop.example.com`` (without ``https://``) was taken: every message's link to the shop was
a relative href no mail client opens, and a cart without its own recovery link had no link back
at all; ``logo_url: logo.png`` was a broken image in every message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cli


def _result(tmp_path: Path, shop: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "cartrescue.yaml"
    path.write_text(f"source: {{type: csv, carts: carts.csv}}\nshop:\n  name: Shop\n{shop}\n", encoding="utf-8")
    return path, cli("carts", "--json", "--config", str(path))


#: The example each key's refusal shows.
EXAMPLES = {"url": "https://shop.example.com", "logo_url": "https://shop.example.com/logo.png"}


@pytest.mark.parametrize(("key", "url"), [("url", "shop.example.com"), ("url", "www.shop.example.com/"),
                                          ("url", "https://shop.example.com/my shop"), ("logo_url", "logo.png"),
                                          ("logo_url", "//cdn.example.com/logo.png")])
def test_a_shop_link_that_is_no_http_link_is_refused_naming_the_key_and_line(tmp_path: Path, key: str,
                                                                             url: str) -> None:
    path, result = _result(tmp_path, f"  {key}: '{url}'")
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"] == (
        f"{path}: shop.{key}: expected an http(s) link like {EXAMPLES[key]} (a space percent-encoded as %20), "
        f"got {url!r} (line 4)")


@pytest.mark.parametrize("shop", ["  url: https://shop.example.com/sv/", "  url: http://shop.example.com",
                                  "  logo_url: https://cdn.example.com/logo.png?v=2", "  logo_url: null"])
def test_http_links_are_taken(tmp_path: Path, shop: str) -> None:
    _path, result = _result(tmp_path, shop)
    assert result.exit_code == 3, result.output  # the config loaded; carts.csv is not there
