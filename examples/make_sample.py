#!/usr/bin/env python3
"""Write a realistic, deterministic sample of abandoned carts and orders for the demo.

Produces ``carts.csv`` and ``orders.csv`` in the generic format of ``docs/csv-format.md``.
Stdlib only; seeded with ``random.Random(2026)``, so the same arguments always give the same
bytes. Every time is relative to ``--now`` (the demo's pinned clock).

    python examples/make_sample.py                      # 300 carts next to this script
    python examples/make_sample.py --carts 1000000 --out /tmp/bench

Rows are written as they are generated (nothing big is held in memory); a million carts
(~2.5 M rows, ~860 MB) take about 25 s of CPU.

What a block of 300 carts contains (larger runs repeat the pattern with fresh customers,
smaller runs take a prefix of it):

* idle time at ``now``: 10 % under 45 min, 15 % 45-60 min, 30 % 1-24 h, 20 % 24-72 h,
  15 % 72 h-7 days, 10 % older than 7 days;
* locales en/sv/hu/ru/af/kk with native names and matching currencies;
* 10 carts already ordered (an order with that ``cart_id``), 5 whose customer ordered by
  email after the cart, 1 followed by a *cancelled* order only (so it is still open),
  2 customers with an undelivered order placed before their cart, ~25 % returning
  customers with 1-5 delivered earlier orders;
* 2 bot addresses, 2 disposable addresses on ``throwaway.example.net``, 3 carts without an
  email, 5 with ``marketing_consent = no`` (~20 % blank), one customer with 3 carts of
  different ages, one zero-value cart, guest carts (blank ``customer_id``).

All addresses are on reserved domains (``example.com`` / ``.org`` / ``.net`` and their
subdomains); phone numbers are fictional.
"""

from __future__ import annotations

import argparse
import random
from datetime import datetime, timedelta, timezone
from math import gcd
from pathlib import Path

SEED = 2026
BLOCK = 300
DEFAULT_NOW = "2026-11-20T10:00:00+00:00"

CART_COLUMNS = [
    "cart_id", "customer_id", "email", "phone", "first_name", "last_name", "locale",
    "marketing_consent", "is_guest", "currency", "total", "created_at", "updated_at",
    "recovery_url", "device", "sku", "name", "quantity", "unit_price", "unit_cost",
    "stock_on_hand", "image_url", "product_url",
]
ORDER_COLUMNS = [
    "order_id", "email", "customer_id", "cart_id", "total", "currency", "status",
    "created_at", "delivered",
]

# --- people ------------------------------------------------------------------------------

# (native first names, native last names) by gender; the ASCII local part of the email is
# transliterated from them.
NAMES: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "en": {
        "f": (["Emma", "Amelia", "Isla", "Olivia", "Sophie", "Grace", "Chloe"],
              ["Smith", "Jones", "Taylor", "Brown", "Williams", "Evans", "Walker"]),
        "m": (["Oliver", "George", "Harry", "Jack", "Noah", "Thomas", "James"],
              ["Wilson", "Thomas", "Wright", "Roberts", "Hughes", "Green", "Clarke"]),
    },
    "sv": {
        "f": (["Åsa", "Elsa", "Linnéa", "Ingrid", "Maja", "Märta", "Sofia"],
              ["Åberg", "Lindström", "Söderberg", "Ekström", "Sjöberg", "Löfgren", "Nyström"]),
        "m": (["Björn", "Göran", "Måns", "Sören", "Oskar", "Örjan", "Anders"],
              ["Björklund", "Johansson", "Hägglund", "Ångström", "Bergqvist", "Strömberg", "Öberg"]),
    },
    "hu": {
        "f": (["Ágnes", "Csilla", "Éva", "Ildikó", "Zsófia", "Réka", "Tünde"],
              ["Kovács", "Szabó", "Tóth", "Horváth", "Németh", "Kiss", "Gulyás"]),
        "m": (["Bálint", "Dávid", "Gergő", "Péter", "Ödön", "Levente", "Zoltán"],
              ["Varga", "Molnár", "Farkas", "Balogh", "Pásztor", "Szűcs", "Fekete"]),
    },
    "ru": {
        "f": (["Анна", "Екатерина", "Мария", "Ольга", "Наталья", "Татьяна", "Юлия"],
              ["Иванова", "Смирнова", "Кузнецова", "Попова", "Соколова", "Морозова", "Волкова"]),
        "m": (["Дмитрий", "Иван", "Сергей", "Алексей", "Михаил", "Андрей", "Юрий"],
              ["Иванов", "Смирнов", "Кузнецов", "Попов", "Соколов", "Лебедев", "Козлов"]),
    },
    "af": {
        "f": (["Annelie", "Marike", "Elmarie", "Lize", "Sunette", "Chanté", "Anri"],
              ["van der Merwe", "Botha", "Pretorius", "du Plessis", "Venter", "le Roux", "Steyn"]),
        "m": (["Pieter", "Johan", "Hendrik", "Riaan", "Wynand", "Gerhard", "Francois"],
              ["Nel", "Coetzee", "van Wyk", "Bezuidenhout", "Joubert", "Kruger", "Malan"]),
    },
    "kk": {
        "f": (["Айгерім", "Гүлнұр", "Жанар", "Динара", "Мәдина", "Әсел", "Ақерке"],
              ["Ахметова", "Сейітова", "Жақсыбекова", "Нұрланова", "Омарова", "Әбенова", "Қасымова"]),
        "m": (["Нұрлан", "Ерлан", "Асқар", "Дәурен", "Бауыржан", "Ғалым", "Төлеген"],
              ["Ахметов", "Сейітов", "Жақсыбеков", "Нұрланов", "Омаров", "Әбенов", "Қасымов"]),
    },
}

TRANSLIT = {
    # Swedish / Hungarian / Afrikaans accents
    "å": "a", "ä": "a", "ö": "o", "é": "e", "á": "a", "í": "i", "ó": "o", "ő": "o", "ú": "u",
    "ü": "u", "ű": "u", "ë": "e", "ê": "e", " ": "", "-": "",
    # Russian
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
    # Kazakh additions
    "ә": "a", "ғ": "g", "қ": "q", "ң": "n", "ө": "o", "ұ": "u", "ү": "u", "һ": "h", "і": "i",
}


def ascii_name(s: str) -> str:
    return "".join(TRANSLIT.get(c, c) for c in s.lower())


# locale -> (weight, locale spellings as shops write them, currencies, email domains, phone prefix)
LOCALES = {
    "en": (35, ["en", "en_GB", "en-US", "en"], ["EUR", "USD", "GBP"],
           ["example.com", "mail.example.com", "example.org"], "+447700900"),
    "sv": (15, ["sv", "sv_SE", "sv-SE"], ["SEK"], ["se.example.org", "post.example.org"], "+46701740"),
    "hu": (12, ["hu", "hu_HU", "hu-HU"], ["HUF"], ["hu.example.net", "example.net"], "+36209990"),
    "ru": (12, ["ru", "ru_RU", "ru-RU"], ["RUB"], ["ru.example.com", "example.com"], "+79990000"),
    "af": (13, ["af", "af_ZA", "af-ZA"], ["ZAR"], ["za.example.net", "example.net"], "+27715550"),
    "kk": (13, ["kk", "kk_KZ", "kk-KZ"], ["KZT"], ["kz.example.org", "example.org"], "+77010000"),
}
LOCALE_KEYS = list(LOCALES)

# --- products ----------------------------------------------------------------------------

# sku, price in EUR, slug, {locale: name}
PRODUCTS = [
    ("MUG-CER-350", 12.90, "ceramic-mug-350", {
        "en": "Ceramic Mug 350 ml", "sv": "Keramikmugg 350 ml", "hu": "Kerámia bögre 350 ml",
        "ru": "Керамическая кружка 350 мл", "af": "Keramiekbeker 350 ml",
        "kk": "Керамикалық саптаяқ 350 мл"}),
    ("TEE-ORG-M", 24.00, "organic-tee", {
        "en": "Organic Cotton T-Shirt, M", "sv": "Ekologisk t-shirt i bomull, M",
        "hu": "Bio pamut póló, M", "ru": "Футболка из органического хлопка, M",
        "af": "Organiese katoen-T-hemp, M", "kk": "Органикалық мақта футболка, M"}),
    ("BAG-LTH-TOTE", 149.00, "leather-tote", {
        "en": "Leather Tote Bag", "sv": "Läderväska, tote", "hu": "Bőr shopper táska",
        "ru": "Кожаная сумка-шопер", "af": "Leer-draagsak", "kk": "Былғары сөмке"}),
    ("LAMP-DESK-LED", 59.00, "led-desk-lamp", {
        "en": "LED Desk Lamp with Wireless Charger",
        "sv": "LED-skrivbordslampa med trådlös laddare",
        "hu": "LED asztali lámpa vezeték nélküli töltővel",
        "ru": "Настольная светодиодная лампа с беспроводной зарядкой",
        "af": "LED-lessenaarlamp met draadlose laaier",
        "kk": "Сымсыз зарядтағышы бар LED үстел шамы"}),
    ("KNIFE-CHEF-20", 89.00, "chef-knife-20", {
        "en": "Chef's Knife 20 cm", "sv": "Kockkniv 20 cm", "hu": "Szakácskés 20 cm",
        "ru": "Поварской нож 20 см", "af": "Sjefsmes 20 cm", "kk": "Аспаз пышағы 20 см"}),
    ("THROW-MERINO-LTD", 219.00, "merino-throw", {
        "en": "Handwoven Merino Wool Throw Blanket, 130 × 170 cm, Natural Undyed Grey, "
              "Limited Winter Edition",
        "sv": "Handvävd filt i merinoull, 130 × 170 cm, ofärgad naturgrå, begränsad vinterupplaga",
        "hu": "Kézzel szőtt merinógyapjú takaró, 130 × 170 cm, festetlen természetes szürke, "
              "limitált téli kiadás",
        "ru": "Плед ручной работы из шерсти мериноса, 130 × 170 см, натуральный некрашеный "
              "серый, ограниченная зимняя серия",
        "af": "Handgeweefde merinowol-kombers, 130 × 170 cm, natuurlike ongekleurde grys, "
              "beperkte winteruitgawe",
        "kk": "Қолдан тоқылған меринос жүнінен жасалған жамылғы, 130 × 170 см, боялмаған "
              "табиғи сұр, шектеулі қысқы шығарылым"}),
    ("ESPRESSO-PRO-230", 649.00, "espresso-machine-pro", {
        "en": "Stainless Steel Espresso Machine with Integrated Burr Grinder and Milk Frother "
              "(230 V, EU plug)",
        "sv": "Espressomaskin i rostfritt stål med inbyggd kvarn och mjölkskummare (230 V)",
        "hu": "Rozsdamentes acél eszpresszógép beépített darálóval és tejhabosítóval (230 V)",
        "ru": "Эспрессо-машина из нержавеющей стали со встроенной жерновой кофемолкой и "
              "капучинатором (230 В)",
        "af": "Espressomasjien van vlekvrye staal met ingeboude meul en melkskuimer (230 V)",
        "kk": "Кіріктірілген кофеұнтақтағышы және сүт көпірткіші бар тот баспайтын болат "
              "эспрессо-машина (230 В)"}),
    ("SOCK-WOOL-3P", 19.50, "wool-socks-3-pack", {
        "en": "Wool Socks, 3 Pairs", "sv": "Ullstrumpor, 3-pack", "hu": "Gyapjúzokni, 3 pár",
        "ru": "Шерстяные носки, 3 пары", "af": "Wolsokkies, 3 pare", "kk": "Жүн шұлық, 3 жұп"}),
    ("CANDLE-SOY-FOREST", 16.00, "soy-candle-forest", {
        "en": 'Soy Candle "Forest"', "sv": "Sojaljus ”Skog”", "hu": "Szójagyertya „Erdő”",
        "ru": "Соевая свеча «Лес»", "af": 'Sojakers "Woud"', "kk": "Соя шамы «Орман»"}),
    ("HEADPH-BT-NC", 199.00, "wireless-anc-headphones", {
        "en": "Wireless Noise-Cancelling Headphones", "sv": "Trådlösa brusreducerande hörlurar",
        "hu": "Vezeték nélküli zajszűrős fejhallgató", "ru": "Беспроводные наушники с шумоподавлением",
        "af": "Draadlose geraasdempende oorfone", "kk": "Шуды басатын сымсыз құлаққап"}),
    ("NOTE-A5-DOT", 9.90, "dotted-notebook-a5", {
        "en": "Dotted Notebook A5", "sv": "Anteckningsbok A5, prickad",
        "hu": "Pontozott jegyzetfüzet, A5", "ru": "Блокнот A5 в точку", "af": "Notaboek A5, gestippel",
        "kk": "А5 нүктелі дәптер"}),
    ("POT-TERRA-XL", 34.00, "terracotta-pot-xl", {
        "en": "Terracotta Plant Pot, XL", "sv": "Terrakottakruka XL", "hu": "Terrakotta virágcserép, XL",
        "ru": "Терракотовый горшок для растений, XL", "af": "Terracotta-plantpot, XL",
        "kk": "Терракота гүл құмырасы, XL"}),
]

# EUR -> currency; HUF and KZT prices are written as whole numbers, the others with 2 decimals
RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85, "SEK": 11.4, "HUF": 395.0, "RUB": 100.0,
         "ZAR": 20.0, "KZT": 520.0}
WHOLE = {"HUF", "KZT"}


def _price_minor(eur: float, currency: str) -> int:
    """A shop-looking price in minor units (whole units for HUF/KZT)."""
    value = eur * RATES[currency]
    if currency in WHOLE:
        step = 1000 if value >= 5000 else 100
        return max(int(value // step) * step - step + (990 if step == 1000 else 90), 90)
    whole = int(value)
    if whole >= 1000:  # 19900.00, 64900.00
        return whole // 100 * 100 * 100
    if whole >= 100:  # 149.00, 219.00
        return whole * 100
    return whole * 100 + (90 if value - whole < 0.5 else 99)  # 12.90, 24.99


def money(minor: int, currency: str) -> str:
    if currency in WHOLE:
        return str(minor)
    return f"{minor // 100}.{minor % 100:02d}"


def csv_cell(value: str) -> str:
    """Quote a cell the way the csv module would (only when needed)."""
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


# Precomputed text of a line item, per product, locale and currency:
# CATALOG[p][(locale, currency)] = (price_minor, price_text, "sku,name,", ",image_url,product_url")
CATALOG: list[dict[tuple[str, str], tuple[int, str, str, str]]] = []
for _sku, _eur, _slug, _names in PRODUCTS:
    _entry = {}
    for _loc in _names:
        for _cur in RATES:
            _minor = _price_minor(_eur, _cur)
            _entry[(_loc, _cur)] = (
                _minor, money(_minor, _cur), f"{_sku},{csv_cell(_names[_loc])},",
                f",https://shop.example.com/images/products/{_sku.lower()}.jpg"
                f",https://shop.example.com/{_loc}/products/{_slug}",
            )
    CATALOG.append(_entry)
# cheap things are in carts more often than espresso machines (a weighted pick list)
CATALOG_WEIGHTED = [p for p, w in enumerate([10, 9, 4, 6, 4, 3, 2, 9, 8, 4, 10, 6]) for _ in range(w)]


def weighted(pairs: list[tuple[object, int]]) -> list:
    """A flat list where each value appears weight times: pick with seq[int(random() * len)]."""
    return [v for v, w in pairs for _ in range(w)]


N_CATALOG = len(CATALOG)
N_CATALOG_WEIGHTED = len(CATALOG_WEIGHTED)
STEPS = [k for k in range(1, N_CATALOG) if gcd(k, N_CATALOG) == 1]
LOCALE_PICK = weighted([(k, LOCALES[k][0]) for k in LOCALE_KEYS])
CONSENT_PICK = weighted([("yes", 70), ("", 20), ("true", 7), ("1", 3)])
DEVICE_PICK = weighted([("mobile", 55), ("desktop", 38), ("tablet", 7)])
LINES_PICK = weighted([(1, 30), (2, 28), (3, 18), (4, 12), (5, 7), (6, 5)])
N_LINES_PICK = len(LINES_PICK)
TSTYLE_PICK = weighted([(0, 70), (1, 15), (2, 15)])

# Names with their ASCII spellings, precomputed: NAME_PICK[locale] = [(firsts, lasts), ...]
# where firsts/lasts are lists of (native, ascii).
NAME_PICK = {
    loc: [([(f, ascii_name(f)) for f in firsts], [(l, ascii_name(l)) for l in lasts])
          for firsts, lasts in by_gender.values()]
    for loc, by_gender in NAMES.items()
}
for _pairs in NAME_PICK.values():
    for _firsts, _lasts in _pairs:
        assert all(csv_cell(n) == n for n, _ in _firsts + _lasts)

# --- time --------------------------------------------------------------------------------

# idle-time buckets (seconds at now) and how many carts of a block of 300 fall in each
MIN, HOUR, DAY = 60, 3600, 86400
BUCKETS = [
    ((2 * MIN, 44 * MIN), 30),           # ~10 %: too fresh to remind
    ((45 * MIN, 60 * MIN), 45),          # ~15 %: first reminder window
    ((HOUR + MIN, 24 * HOUR), 90),       # ~30 %
    ((24 * HOUR + MIN, 72 * HOUR), 60),  # ~20 %
    ((72 * HOUR + MIN, 7 * DAY), 45),    # ~15 %
    ((7 * DAY + HOUR, 30 * DAY), 30),    # ~10 %: too old
]
PLUS_ONE = timezone(timedelta(hours=1))


def iso(ts: datetime, style: int) -> str:
    """ISO 8601 with an offset (ts is UTC, whole seconds): 0 +00:00, 1 +01:00, 2 Z."""
    if style == 1:
        return ts.astimezone(PLUS_ONE).isoformat()
    if style == 2:
        return ts.isoformat()[:-6] + "Z"
    return ts.isoformat()


# --- the special roles of a block ----------------------------------------------------------

SPECIAL_ROLES = (
    ["ordered_cart"] * 10 + ["ordered_email"] * 5 + ["cancelled_after"] * 1
    + ["pending"] * 2 + ["bot"] * 2 + ["disposable"] * 2 + ["no_email"] * 3
    + ["no_consent"] * 5 + ["multi"] * 3 + ["zero"] * 1
)
BOT_LOCALS = ["bot-7f3a9c", "test-crawler-04"]
# the multi-cart customer's three carts: idle 50 min, 26 h, 5 days
MULTI_IDLE = [50 * MIN + 20, 26 * HOUR + 7 * MIN, 5 * DAY + 3 * HOUR]
NO_ORDERS = ("bot", "disposable", "no_email")


class Generator:
    def __init__(self, now: datetime, carts: int, cart_out, order_out) -> None:
        self.rng = random.Random(SEED)
        self.r = self.rng.random
        self.now = now
        self.carts = carts
        self.cart_write = cart_out.write
        self.order_write = order_out.write
        self.customer_no = 0
        self.order_no = 0
        self.cart_no = 0
        self.block_no = 0
        self.rows = 0

    def pick(self, seq):
        return seq[int(self.r() * len(seq))]

    def between(self, lo: int, hi: int) -> int:
        return lo + int(self.r() * (hi - lo + 1))

    # -- people --------------------------------------------------------------------------

    def new_customer(self, *, guest: bool | None = None) -> dict:
        r, pick = self.r, self.pick
        self.customer_no += 1
        n = self.customer_no
        loc = pick(LOCALE_PICK)
        _, spellings, currencies, domains, phone_prefix = LOCALES[loc]
        firsts, lasts = pick(NAME_PICK[loc])
        (first, a_first), (last, a_last) = pick(firsts), pick(lasts)
        style = int(r() * 4)
        if style == 0:
            local = f"{a_first}.{a_last}{n}"
        elif style == 1:
            local = f"{a_first[0]}{a_last}{n}"
        elif style == 2:
            local = f"{a_first}{n}"
        else:
            local = f"{a_last}.{a_first}.{n}"
        if guest is None:
            guest = r() < 0.3
        return {
            "id": "" if guest else str(7_000_000 + n * 7),
            "guest": guest,
            "email": f"{local}@{pick(domains)}",
            "phone": f"{phone_prefix}{n % 1000:03d}" if r() < 0.4 else "",
            "first": first,
            "a_first": a_first,
            "last": last,
            "locale": loc,
            "locale_text": pick(spellings),
            "currency": pick(currencies),
            "consent": pick(CONSENT_PICK),
        }

    # -- orders --------------------------------------------------------------------------

    def order(self, cust: dict, at: datetime, total: int, *, cart_id: str = "",
              status: str = "completed", delivered: str = "yes", email: bool = True,
              customer_id: bool = True) -> None:
        self.order_no += 1
        cur = cust["currency"]
        self.order_write(
            f"ord-{self.order_no:07d},{cust['email'] if email else ''},"
            f"{cust['id'] if customer_id else ''},{cart_id},{money(total, cur)},{cur},"
            f"{status},{iso(at, self.pick(TSTYLE_PICK))},{delivered}\n"
        )

    def history(self, cust: dict, before: datetime) -> None:
        """Earlier delivered orders of a returning customer."""
        key = (cust["locale"], cust["currency"])
        for _ in range(self.between(1, 5)):
            at = before - timedelta(seconds=self.between(5 * DAY, 400 * DAY))
            total = sum(self.pick(CATALOG)[key][0] for _ in range(self.between(1, 3)))
            self.order(cust, at, total)

    # -- carts ---------------------------------------------------------------------------

    def cart(self, role: str, idle_s: int, cust: dict) -> None:
        r, pick, between = self.r, self.pick, self.between
        self.cart_no += 1
        cart_id = f"cart-{self.cart_no:06d}"
        now = self.now
        updated = now - timedelta(seconds=idle_s)
        if idle_s < 2 * HOUR:
            span = between(0, 20 * MIN)
        else:
            span = between(0, min(idle_s // 2, 3 * DAY))
        created = updated - timedelta(seconds=span)
        tstyle = pick(TSTYLE_PICK)

        loc, cur = cust["locale"], cust["currency"]
        key = (loc, cur)
        email = cust["email"]
        consent = cust["consent"]
        if role == "bot":
            bot = BOT_LOCALS[self.bots % 2]
            self.bots += 1
            email = f"{bot}@example.com" if self.block_no == 1 else f"{bot}-{self.block_no}@example.com"
        elif role == "disposable":
            email = f"{cust['a_first']}.{self.cart_no % 97}@throwaway.example.net"
        elif role == "no_email":
            email = ""
        if role == "no_consent":
            consent = "no"

        n_lines = LINES_PICK[int(r() * N_LINES_PICK)]
        if n_lines == 1:
            picks = [CATALOG_WEIGHTED[int(r() * N_CATALOG_WEIGHTED)]]
        else:  # distinct products: walk the catalog with a step coprime to its size
            start, step = int(r() * N_CATALOG), STEPS[int(r() * len(STEPS))]
            picks = [(start + k * step) % N_CATALOG for k in range(n_lines)]
        lines = []
        total = 0
        zero = role == "zero"
        for p in picks:
            price, price_text, prefix, suffix = CATALOG[p][key]
            if zero:
                price, price_text = 0, money(0, cur)
            qty = 1 if r() < 0.75 else 2 + int(r() * 3)
            total += price * qty
            cost = stock = ""
            x = r()
            if price and x < 0.12:
                cost = money(int(price * (0.18 + 0.2 * r())), cur)  # high margin
            elif price and x < 0.30:
                cost = money(int(price * (0.45 + 0.35 * r())), cur)
            x = r()
            if x < 0.12:
                stock = str(200 + int(r() * 1301))  # overstock
            elif x < 0.55:
                stock = str(int(r() * 41))
            lines.append(f"{prefix}{qty},{price_text},{cost},{stock}{suffix}\n")

        if cust["guest"]:
            guest_text = "yes" if r() < 0.5 else ""
        else:
            guest_text = "no" if r() < 0.4 else ""
        head = (
            f"{cart_id},{cust['id']},{email},{cust['phone']},{cust['first']},{cust['last']},"
            f"{cust['locale_text']},{consent},{guest_text},{cur},"
            f"{money(total, cur) if r() < 0.6 else ''},{iso(created, tstyle)},{iso(updated, tstyle)},"
            f"https://shop.example.com/cart/recover/{self.rng.getrandbits(96):024x},"
            f"{pick(DEVICE_PICK)},"
        )
        if len(lines) == 1 or r() < 0.5:  # cart-level columns repeated on every row
            self.cart_write(head + head.join(lines))
        else:  # ... or on the first row only
            self.cart_write(head + lines[0] + (cart_id + "," * 15).join([""] + lines[1:]))
        self.rows += len(lines)

        # orders that concern this cart
        if role in ("ordered_cart", "ordered_email", "cancelled_after"):
            at = updated + timedelta(seconds=int(idle_s * (0.2 + 0.7 * r())))
            if role == "ordered_cart":
                recent = now - at < timedelta(days=2)
                self.order(cust, at, total, cart_id=cart_id,
                           status="processing" if recent else "completed",
                           delivered="no" if recent else "yes")
            elif role == "ordered_email":
                self.order(cust, at, total, customer_id=False, status="processing", delivered="")
            else:
                self.order(cust, at, total, status="cancelled", delivered="")
        elif role == "pending":
            at = created - timedelta(seconds=between(HOUR, 4 * DAY))
            self.order(cust, at, pick(CATALOG)[key][0], status="processing", delivered="no")

    # -- blocks --------------------------------------------------------------------------

    def run(self) -> None:
        self.cart_write(",".join(CART_COLUMNS) + "\n")
        self.order_write(",".join(ORDER_COLUMNS) + "\n")
        done = 0
        while done < self.carts:
            size = min(BLOCK, self.carts - done)
            self.block(size)
            done += size

    def block(self, size: int) -> None:
        rng, r = self.rng, self.r
        self.block_no += 1
        self.bots = 0
        roles = SPECIAL_ROLES + ["normal"] * (BLOCK - len(SPECIAL_ROLES))
        rng.shuffle(roles)
        buckets = [b for b, count in BUCKETS for _ in range(count)]
        rng.shuffle(buckets)
        multi = self.new_customer(guest=False)
        multi_seen = 0
        for role, (lo, hi) in zip(roles[:size], buckets[:size]):
            idle = self.between(lo, hi)
            if role == "multi":
                cust = multi
                idle = MULTI_IDLE[multi_seen]
                if multi_seen == 0 and r() < 0.5:
                    self.history(cust, self.now - timedelta(days=6))
                multi_seen += 1
            else:
                cust = self.new_customer(guest=True if role == "no_email" else None)
                if role not in NO_ORDERS and r() < 0.25:  # a returning customer
                    self.history(cust, self.now - timedelta(seconds=idle + 3 * DAY))
            self.cart(role, idle, cust)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--now", default=DEFAULT_NOW,
                    help=f"the pinned clock, ISO 8601 with offset (default {DEFAULT_NOW})")
    ap.add_argument("--carts", type=int, default=300, help="number of carts (default 300)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="output folder (default: this script's folder)")
    args = ap.parse_args(argv)
    try:
        now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
    except ValueError:
        ap.error(f"--now: not an ISO 8601 time: {args.now!r}")
    if now.tzinfo is None:
        ap.error("--now needs an offset, e.g. 2026-11-20T10:00:00+00:00")
    now = now.astimezone(timezone.utc).replace(microsecond=0)
    if args.carts < 0:
        ap.error("--carts must be >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    carts_path, orders_path = args.out / "carts.csv", args.out / "orders.csv"
    with open(carts_path, "w", encoding="utf-8", newline="", buffering=1 << 20) as cf, \
            open(orders_path, "w", encoding="utf-8", newline="", buffering=1 << 20) as of:
        gen = Generator(now, args.carts, cf, of)
        gen.run()
    print(f"wrote {carts_path} ({args.carts} carts, {gen.rows} rows) and "
          f"{orders_path} ({gen.order_no} orders)")


if __name__ == "__main__":
    main()
