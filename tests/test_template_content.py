"""The shipped reminder templates: every locale x template x part renders and carries what it must.

Renders against fake contexts that hold exactly the variables documented in docs/templates.md,
in the same kind of environment the app uses (sandbox, StrictUndefined, HTML autoescaped).
"""

from __future__ import annotations

import copy
import itertools
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LOCALES = ("en", "sv", "hu", "ru", "af", "kk")
NAMES = ("reminder-1", "reminder-2", "reminder-3")
PARTS = ("subject.txt", "txt", "html")

RECOVERY = "https://shop.example/cart/recover?token=r3c0v3ry&x=1"
UNSUB = "https://shop.example/u/unsub-4f2a?list=reminders&a=1"
SURVEY = "https://shop.example/cart-survey?token=s.c1gn3d.t0k3n&reason="


# "plain": Jinja's defaults; "app": the whitespace options cartrescue.compose.render uses. The text parts
# are written (``+%}`` on line-ending block tags) to come out the same under both.
WHITESPACE = {
    "plain": {},
    "app": {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True},
}


def make_env(mode: str) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"]),
        **WHITESPACE[mode],
    )


@pytest.fixture(scope="module", params=sorted(WHITESPACE))
def env(request) -> SandboxedEnvironment:
    return make_env(request.param)


def _shop(name: str = "Nordic Home & Garden", phone: str | None = "+46 8 123 456 78") -> dict:
    return {
        "name": name,
        "url": "https://shop.example/",
        "support_email": "help@shop.example",
        "support_phone": phone,
        "address": "Storgatan 1\n111 22 Stockholm",
        "returns": "Free returns within 30 days.",
        "logo_url": "https://shop.example/logo.png" if phone else None,
    }


def full_context() -> dict:
    """Returning customer with a name, support phone, incentive, items with images and links."""
    return {
        "shop": _shop(),
        "customer": {
            "first_name": "Anna",
            "last_name": "Berg",
            "greeting_name": "Anna",
            "email": "anna@example.com",
            "is_returning": True,
            "previous_orders": 3,
        },
        "cart": {"id": "C-1001", "currency": "EUR", "item_count": 3, "has_images": True, "total": "1 234,50 €",
                 "items_not_shown": 0},
        "items": [
            {
                "name": "Linen duvet cover <King>",
                "sku": "LIN-K",
                "quantity": 2,
                "unit_price": "499,00 €",
                "line_total": "998,00 €",
                "image_url": "https://shop.example/img/lin.jpg",
                "product_url": "https://shop.example/p/lin",
            },
            {
                "name": "Ceramic mug",
                "sku": "MUG-1",
                "quantity": 1,
                "unit_price": "236,50 €",
                "line_total": "236,50 €",
                "image_url": None,
                "product_url": "https://shop.example/p/mug",
            },
        ],
        "recovery_url": RECOVERY,
        "unsubscribe_url": UNSUB,
        "step": {"number": 3, "count": 3},
        "tier": "high",
        "incentive": {"kind": "percent", "value": "10 %", "code": "BACK-7QX2", "expires": "30.06.2025"},
        "locale": "sv",
        "direction": "ltr",
        "variant": "a",
        "survey": {
            "question": "Did <anything> stop you?",
            "url": SURVEY.rsplit("&", 1)[0],
            "reasons": [{"code": code, "label": f"Label of {code} & co", "url": SURVEY + code}
                        for code in ("shipping_cost", "price", "other")],
        },
    }


def bare_context() -> dict:
    """New customer without a name, no phone, no logo, no returns line, no incentive, item without
    image or link."""
    shop = _shop(phone=None)
    shop["returns"] = ""  # the config's default
    return {
        "shop": shop,
        "customer": {
            "first_name": None,
            "last_name": None,
            "greeting_name": None,
            "email": "guest@example.com",
            "is_returning": False,
            "previous_orders": 0,
        },
        "cart": {"id": "C-1002", "currency": "SEK", "item_count": 1, "has_images": False, "total": "149,00 kr",
                 "items_not_shown": 0},
        "items": [
            {
                "name": "Gift card",
                "sku": "GIFT",
                "quantity": 1,
                "unit_price": "149,00 kr",
                "line_total": "149,00 kr",
                "image_url": None,
                "product_url": None,
            }
        ],
        "recovery_url": RECOVERY,
        "unsubscribe_url": UNSUB,
        "step": {"number": 1, "count": 3},
        "tier": "standard",
        "incentive": None,
        "locale": "en",
        "direction": "ltr",
        "variant": None,
        "survey": None,
    }


CONTEXTS = {"full": full_context, "bare": bare_context}


class _BalanceChecker(HTMLParser):
    """Tracks open/close of non-void tags; records every mismatch."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "param", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            self.errors.append(f"end tag for void element </{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def html_errors(html: str) -> list[str]:
    checker = _BalanceChecker()
    checker.feed(html)
    checker.close()
    return checker.errors + [f"<{t}> never closed" for t in checker.stack]


def render(env, locale: str, name: str, part: str, ctx: dict) -> str:
    return env.get_template(f"{locale}/{name}.{part}").render(**ctx)


def test_every_locale_has_every_part():
    missing = [
        f"{loc}/{name}.{part}"
        for loc in LOCALES
        for name in NAMES
        for part in PARTS
        if not (TEMPLATES / loc / f"{name}.{part}").is_file()
    ]
    assert not missing
    assert (TEMPLATES / "_layout.html").is_file()


@pytest.mark.parametrize("ctx_name", sorted(CONTEXTS))
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("locale", LOCALES)
def test_message_renders_with_required_content(env, locale, name, ctx_name):
    ctx = CONTEXTS[ctx_name]()
    ctx["locale"] = locale
    subject = render(env, locale, name, "subject.txt", ctx).strip()
    text = render(env, locale, name, "txt", ctx)
    html = render(env, locale, name, "html", ctx)

    assert subject and "\n" not in subject and len(subject) <= 78, subject
    for part in (text, html):
        assert "None" not in part  # an optional value leaked as the string "None"

    assert UNSUB in text
    assert f'href="{UNSUB.replace("&", "&amp;")}"' in html
    assert RECOVERY in text
    assert f'href="{RECOVERY.replace("&", "&amp;")}"' in html

    for item in ctx["items"]:
        assert item["name"] in text
        assert item["line_total"] in text
        escaped = item["name"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in html
        if item["image_url"] is not None:
            assert item["image_url"] in html
        if item["product_url"] is not None:
            assert item["product_url"] in html
    assert ctx["cart"]["total"] in text and ctx["cart"]["total"] in html
    assert "<King>" not in html  # cart data is autoescaped

    assert ctx["shop"]["support_email"] in text and ctx["shop"]["support_email"] in html
    if ctx["shop"]["support_phone"] is not None:
        assert ctx["shop"]["support_phone"] in text and ctx["shop"]["support_phone"] in html
    assert "Storgatan 1" in text and "111 22 Stockholm" in html
    if name == "reminder-2" and ctx["shop"]["returns"]:
        assert ctx["shop"]["returns"] in text and ctx["shop"]["returns"] in html
    dangling = [line for line in text.splitlines() if line.endswith(": ")]
    assert not dangling  # a label whose optional value was left out
    if ctx["customer"]["greeting_name"] is not None:
        assert ctx["customer"]["greeting_name"] in text and ctx["customer"]["greeting_name"] in html

    survey = ctx["survey"]
    if survey is None:
        assert "cart-survey" not in text and "cart-survey" not in html
    else:
        assert survey["question"] in text and "Did &lt;anything&gt; stop you?" in html
        for reason in survey["reasons"]:
            assert f"- {reason['label']}: {reason['url']}" in text
            assert f'href="{reason["url"].replace("&", "&amp;")}"' in html
            assert reason["label"].replace("&", "&amp;") + "</a>" in html

    assert f'<html lang="{locale}">' in html  # left to right: no dir (the default)
    assert html_errors(html) == []


@pytest.mark.parametrize(
    "kind,value,code",
    [("percent", "15 %", "SAVE-K9Z1"), ("fixed", "5,00 €", "SAVE-K9Z1"), ("free_shipping", "", "SAVE-K9Z1"),
     ("percent", "15 %", None)],  # a config incentive may come without a code
)
@pytest.mark.parametrize("locale", LOCALES)
def test_last_reminder_shows_incentive(env, locale, kind, value, code):
    ctx = bare_context()
    ctx["incentive"] = {"kind": kind, "value": value, "code": code, "expires": "30 juni 2025"}
    subject = render(env, locale, "reminder-3", "subject.txt", ctx).strip()
    text = render(env, locale, "reminder-3", "txt", ctx)
    html = render(env, locale, "reminder-3", "html", ctx)
    for part in (text, html):
        assert "30 juni 2025" in part
        assert "None" not in part
        if code is not None:
            assert code in part
        if value:
            assert value in part
    if value:
        assert value in subject
    assert html_errors(html) == []


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("locale", LOCALES)
def test_subject_fits_in_60_with_long_names(env, locale, name):
    """The target: <= 60 characters with a 20-character shop name and a 12-character first name."""
    for ctx in (full_context(), bare_context()):
        ctx["shop"]["name"] = "S" * 20
        ctx["customer"]["first_name"] = ctx["customer"]["greeting_name"] = "Maximilianna"  # 12 characters
        for kind, value in (("percent", "15 %"), ("fixed", "1 500,00 ₸"), ("free_shipping", "")):
            if ctx["incentive"] is not None:
                ctx = copy.deepcopy(ctx)
                ctx["incentive"].update(kind=kind, value=value)
            subject = " ".join(render(env, locale, name, "subject.txt", ctx).split())
            assert len(subject) <= 60, (len(subject), subject)


@pytest.mark.parametrize("ctx_name", sorted(CONTEXTS))
@pytest.mark.parametrize("locale", LOCALES)
def test_text_layout_does_not_depend_on_whitespace_options(locale, ctx_name):
    plain, app = make_env("plain"), make_env("app")
    for name in NAMES:
        for part in ("subject.txt", "txt"):
            ctx = CONTEXTS[ctx_name]()
            a = render(plain, locale, name, part, ctx).rstrip("\n")
            b = render(app, locale, name, part, ctx).rstrip("\n")
            assert a == b, f"{locale}/{name}.{part}"
            assert "\n\n\n" not in a  # no stray empty lines


@pytest.mark.parametrize(("count", "said"), [(1, "(1 item,"), (2, "(2 items,")])
def test_the_afrikaans_text_message_counts_one_item_as_one(env, count, said):
    ctx = full_context()
    ctx["cart"]["item_count"] = count
    assert said in render(env, "af", "reminder-2", "sms.txt", ctx)


# -- the shipped text messages with a real shop's link ------------------------------------------

#: A Shopify cart link as shops have them (~110 characters); the bundled samples' links are ~60.
LONG_RECOVERY = ("https://example-shop.myshopify.com/cart/c/Z2NwLWV1cm9wZS13ZXN0MTowMUhLTjJGN1Q1WDBCRkZRWk5NNl"
                 "pZVEc?key=abc123def456")
#: Longer than the codes the shipped config and docs make ("CR-{random:8}" is 11, COMEBACK10 10):
#: 13 characters, as the audit's shop had.
LONG_CODE = "WELCOMEBACK15"
SMS_FILES = sorted(path.relative_to(TEMPLATES).as_posix() for path in TEMPLATES.glob("*/*.sms.txt"))


def _sms_offers() -> list:
    from cartrescue.config import Incentive

    return [None, Incentive(kind="percent", value=15, code=LONG_CODE),
            Incentive(kind="fixed", value=15, code=LONG_CODE), Incentive(kind="free_shipping", code=LONG_CODE)]


@pytest.mark.parametrize("file", SMS_FILES)
def test_every_shipped_text_fits_its_segments_with_a_long_link_and_code(file: str) -> None:
    """The Hungarian step-3 text took 4 segments (202 UCS-2 units) with a 62-character link and a
    13-character code: a render error, so no Hungarian customer got it. Each shipped text must
    fit ``sms.max_segments`` (3) with a real shop's ~110-character link, the longest code, a
    16-character shop name (docs/channels.md promises that much), a large amount and the longest
    month name of its language, for every offer."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from cartrescue.compose.render import Renderer
    from cartrescue.config import Config
    from cartrescue.model import Cart, Customer, LineItem
    from cartrescue.sms_text import measure

    locale, _, name = file.partition("/")
    template, _, variant = name.removesuffix(".sms.txt").partition("@")
    renderer = Renderer(Config(source={"type": "csv", "carts": "c.csv"}, shop={"name": "Nordic Home Shop"}))
    worst: tuple[int, str] = (0, "")
    items = tuple(LineItem(sku=f"S{n}", name="Linen duvet cover", quantity=3, unit_price=Decimal("4115.23"))
                  for n in range(4))
    # Each currency (its amount's length), and each month of the expiry (szeptember, сентября...).
    dates = [(currency, 9) for currency in ("EUR", "HUF", "KZT", "RUB", "SEK", "USD")] + [("EUR", m) for m in range(1, 13)]
    for (currency, month), incentive in itertools.product(dates, _sms_offers()):
        now = datetime(2026, month, 26, 10, tzinfo=timezone.utc)
        cart = Cart(id="C-1", source="check", customer=Customer("a@example.com", first_name="Anna", locale=locale),
                    currency=currency, items=items, total=sum((i.line_total for i in items), Decimal(0)),
                    created_at=now - timedelta(hours=3), updated_at=now - timedelta(hours=2),
                    recovery_url=LONG_RECOVERY)
        context = renderer.context(cart, locale=locale, step=3, step_count=3, tier="standard", previous_orders=0,
                                   unsubscribe_url="https://shop.example.com/u?t=x", incentive=incentive, now=now,
                                   variant=variant or None, code=incentive and incentive.code, channel="sms",
                                   tags=False)
        text = renderer.render_sms(template, locale, context, variant or None, 3)
        assert LONG_RECOVERY in text and (incentive is None or template != "reminder-3" or LONG_CODE in text)
        worst = max(worst, (measure(text).units, text))
    length = measure(worst[1])
    assert length.segments <= 3, f"{file}: {length.describe()}: {worst[1]}"
