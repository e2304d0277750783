"""Every URL in a message: only http(s) from data reaches a link or an image, and links carry UTM tags."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartrescue.config import Config, LinksConfig
from cartrescue.compose.links import add_params, missing_utm, safe_url, tagger, utm_values
from cartrescue.template_check import check_templates, edge_carts
from conftest import REPO, Shop, cart

BROKEN = REPO / "tests" / "fixtures" / "templates_broken"


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", " JavaScript:alert(1)", "java\tscript:alert(1)", "\x01javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox", "//evil.example/x", "/cart/1", "ftp://x.example/a",
    "https://", "", None,
])
def test_only_http_and_https_urls_pass(url: str | None) -> None:
    assert safe_url(url) is None


def test_a_safe_url_is_cleaned_as_a_browser_reads_it() -> None:
    assert safe_url("  https://shop.example.com/p/1\n") == "https://shop.example.com/p/1"
    assert safe_url("HTTP://shop.example.com/a\tb") == "HTTP://shop.example.com/ab"


# URL-ish text: schemes in any case, the characters safe_url and add_params look at, and others.
url_texts = st.one_of(st.none(), st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["", "http://", "https://", "HTTPS://", "Http://", " https://", "\x01http://", "ht\ttp://",
                     "javascript:", "//", "https:/"]),
    st.lists(st.sampled_from([*"ab/.?#&=_ \t\n\r\x00é", "utm_source=x", "utm_", "%20"]), max_size=20).map("".join)))


def _browser_reading(value: str | None) -> str | None:
    """safe_url's rule as docs/templates.md states it: edges (controls, space) stripped, tabs and
    newlines removed anywhere, then http(s) in any case, with something after the scheme."""
    if not value:
        return None
    text = value.strip("".join(chr(code) for code in range(0x21)))
    text = text.replace("\t", "").replace("\n", "").replace("\r", "")
    return text if text[:8].lower().startswith(("http://", "https://")) and len(text) > 8 else None


@settings(max_examples=1500, deadline=None)
@given(url_texts)
def test_a_url_is_safe_exactly_as_a_browser_reads_it(url: str | None) -> None:
    assert safe_url(url) == _browser_reading(url)


@settings(max_examples=1500, deadline=None)
@given(url_texts, st.sampled_from([None, "b"]), st.booleans())
def test_a_taggers_link_is_the_safe_url_with_the_utm_parameters_added(url: str | None, variant: str | None,
                                                                       utm: bool) -> None:
    """Whatever the URL has (a query, a fragment, its own utm_ keys, none of them): the tagger's
    shortcut for a URL without query or fragment gives what add_params gives."""
    links = LinksConfig(utm=utm)
    params = utm_values(links, "default", 2, variant, "high")
    clean = safe_url(url)
    assert tagger(links, "default", 2, variant, "high")(url) == (None if clean is None else add_params(clean, params))


def test_utm_parameters_go_before_the_fragment_and_keep_what_the_url_has() -> None:
    params = {"utm_source": "cartrescue", "utm_campaign": "default-step2"}
    assert add_params("https://s.example/c", params) == "https://s.example/c?utm_source=cartrescue&utm_campaign=default-step2"
    assert add_params("https://s.example/c?a=1#top", params) == \
        "https://s.example/c?a=1&utm_source=cartrescue&utm_campaign=default-step2#top"
    assert add_params("https://s.example/c?utm_source=newsletter", params) == \
        "https://s.example/c?utm_source=newsletter&utm_campaign=default-step2"


def test_campaign_is_sequence_and_step_and_content_is_the_variant() -> None:
    links = LinksConfig()
    assert utm_values(links, "default", 3, "b", "high") == {
        "utm_source": "cartrescue", "utm_medium": "email", "utm_campaign": "default-step3", "utm_content": "b"}
    assert "utm_content" not in utm_values(links, "default", 1, None, "high")
    assert utm_values(LinksConfig(utm=False), "default", 1, "a", None) == {}
    tag = tagger(links, "vip", 1, None, None)
    assert tag("javascript:alert(1)") is None
    query = parse_qs(urlsplit(tag("https://s.example/x?q=a b") or "").query)
    assert query["utm_campaign"] == ["vip-step1"] and query["q"] == ["a b"]


def test_an_unknown_placeholder_in_links_config_names_the_key(shop: Shop) -> None:
    shop.add(cart("c1")).configure(links={"utm_campaign": "{campaign}"})
    result = shop.cli("carts")
    assert result.exit_code == 2 and "links.utm_campaign: unknown placeholder {campaign}" in result.stderr


def test_javascript_and_data_urls_from_cart_data_never_reach_a_link_or_an_image(shop: Shop) -> None:
    rows = cart("c1", items=[("A", "Lamp", 1, "10.00"), ("B", "Mug", 1, "5.00")])
    rows[0].update(recovery_url="javascript:alert(document.cookie)")
    shop.add(rows)
    shop.carts[0]["image_url"] = "data:image/svg+xml;base64,PHN2Zz4="
    shop.carts[0]["product_url"] = " JaVaScRiPt:alert(1)"
    shop.carts[1]["image_url"] = "https://cdn.example.com/mug.jpg"
    shop.carts[1]["product_url"] = "https://shop.example.com/p/mug"
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 0, result.output
    html, text = result.json["html"], result.json["text"]
    assert "javascript" not in html.lower() and "data:" not in html and "javascript" not in text.lower()
    assert 'src="https://cdn.example.com/mug.jpg"' in html  # images are not tagged
    assert "https://shop.example.com/p/mug?utm_source=cartrescue&amp;utm_medium=email&amp;utm_campaign=default-step1" in html
    # the button falls back to the shop's URL, tagged like every link
    assert "https://shop.example.com?utm_source=cartrescue&utm_medium=email&utm_campaign=default-step1" in text


def test_the_recovery_link_of_a_variant_carries_the_variant(shop: Shop) -> None:
    shop.add(*(cart(f"c{n}") for n in range(20))).configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}}]}})
    for n in range(20):
        result = shop.cli("preview", f"c{n}", "--json")
        assert result.exit_code == 0, result.output
        variant = result.json["variant"]
        assert f"https://shop.example.com/cart/c{n}?utm_source=cartrescue&utm_medium=email" \
               f"&utm_campaign=default-step1&utm_content={variant}" in result.json["text"]


def test_the_unsubscribe_link_is_never_tagged(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 0, result.output
    unsubscribe = [line for line in result.json["text"].splitlines() if "unsubscribe?token=" in line]
    assert unsubscribe and all("utm_" not in line for line in unsubscribe)


def test_templates_check_fails_a_link_written_into_a_template_without_utm(tmp_path: Path) -> None:
    folder = tmp_path / "t" / "en"
    folder.mkdir(parents=True)
    for part in ("subject.txt", "txt"):
        (folder / f"social.{part}").write_text((BROKEN / "en" / f"good.{part}").read_text(encoding="utf-8"),
                                                encoding="utf-8")
    html = (BROKEN / "en" / "good.html").read_text(encoding="utf-8")
    (folder / "social.html").write_text(html.replace(
        "</body>", '<p><a href="https://instagram.example/shop">Follow us</a> <a href="mailto:a@b.example">mail</a></p>'
        "</body>"), encoding="utf-8")
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=tmp_path / "t")
    report = check_templates(config, templates=["social"], carts=edge_carts())
    kinds = {(p.kind, p.file) for case in report.cases for p in case.problems}
    assert kinds == {("utm", "en/social.html")}
    message = report.cases[0].problems[0].message
    assert "utm_source, utm_medium, utm_campaign" in message and "instagram.example" in message
    off = Config(source={"type": "csv", "carts": "c.csv"}, templates=tmp_path / "t", links={"utm": False})
    assert check_templates(off, templates=["social"], carts=edge_carts()).ok


def test_every_shipped_link_carries_the_utm_keys() -> None:
    config = Config(source={"type": "csv", "carts": "carts.csv"})
    report = check_templates(config, carts=edge_carts())
    assert report.ok, [(c.name, [p.message for p in c.problems]) for c in report.failed]
    assert missing_utm("https://s.example/?utm_source=x", {"utm_source": "x", "utm_medium": "y"}) == ["utm_medium"]



def test_the_cart_table_has_an_image_column_only_when_an_item_has_a_safe_image(shop: Shop) -> None:
    shop.add(cart("c1", items=[("A", "Lamp", 1, "10.00"), ("B", "Mug", 1, "5.00")]),
             cart("c2", items=[("C", "Vase", 1, "20.00")]))
    shop.carts[0]["image_url"] = "javascript:alert(1)"  # unsafe: becomes None, as if absent
    shop.carts[1]["image_url"] = "https://cdn.example.com/mug.jpg"
    shop.carts[2]["image_url"] = "data:image/png;base64,AAAA"
    with_image = shop.cli("preview", "c1", "--json")
    without = shop.cli("preview", "c2", "--json")
    assert with_image.exit_code == 0 and without.exit_code == 0, with_image.output + without.output
    assert 'width="76"' in with_image.json["html"] and 'colspan="2"' in with_image.json["html"]
    assert 'width="76"' not in without.json["html"] and 'colspan="2"' not in without.json["html"]
