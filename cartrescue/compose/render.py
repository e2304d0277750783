"""Rendering: template + cart -> subject, plain text and HTML.

Owns the Jinja environment (sandboxed, StrictUndefined, autoescape for ``.html`` only), locale
resolution with fallback (``sv_SE`` -> ``sv`` -> the shop's default), A/B variant files
(``reminder-1@b.subject.txt`` overrides ``reminder-1.subject.txt`` for variant ``b``, part by
part), the template context and locale-aware money and date formatting (Babel). It must not
decide who gets what nor build MIME. The file layout and context are documented in
docs/templates.md.
"""

from __future__ import annotations

import _signal
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from cartrescue.compose.links import Tag, safe_url, tagger
from cartrescue.compose.sandbox_limits import (
    DICT_ATTRIBUTES,
    MAX_PART_CHARS,
    binop,
    bounded,
    bounded_filters,
    check_format,
    code_generator_class,
    escape_str,
    fast_escape,
    str_call_args,
)
from cartrescue.config import Config, Incentive
from cartrescue.contacts import shown_name
from cartrescue.errors import CartrescueError, TemplateError
from cartrescue.model import Cart, quick_init, quick_new
from cartrescue.template_cache import bytecode_cache

PARTS = ("subject.txt", "txt", "html")
SMS_PART = "sms.txt"  # the text of an SMS step: ``reminder-2.sms.txt`` (docs/channels.md#sms)
# Currencies whose minor unit exists on paper only: whole amounts are shown without decimals
# (``4 990 Ft``, ``185 000 ₸``). Currencies without a minor unit (JPY, ISK, KRW) never show any.
WHOLE_UNITS = frozenset({"HUF", "KZT"})
_V = TypeVar("_V")


@quick_init
@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    locale: str
    files: tuple[str, ...] = ()  # the template file of each part (subject, text, HTML)


_rendered = quick_new(Rendered)  # Rendered(...) for fewer instructions: one per message


def subject_line(rendered: str) -> str:
    """The subject part as a message carries it, on one line: the ``Subject`` header, and the
    ``subject`` that the text and HTML parts see (the layout's ``<title>``, which a screen reader
    and "view in browser" show)."""
    return " ".join(rendered.split())


def part_name(locale: str, template: str, part: str, variant: str | None = None) -> str:
    """``sv/reminder-1.txt``, or ``sv/reminder-1@b.txt`` for variant ``b``."""
    return f"{locale}/{template}@{variant}.{part}" if variant else f"{locale}/{template}.{part}"


def part_file(available: frozenset[str], template: str, locale: str, part: str, variant: str | None = None) -> str:
    """The file that renders ``part`` among the ``available`` ones: the variant's own file if
    there is one, else the base (an arm without files of its own reads the control's)."""
    if variant:
        own = part_name(locale, template, part, variant)
        if own in available:
            return own
    return part_name(locale, template, part)


def locale_candidates(locale: str | None, default_locale: str) -> list[str]:
    """Where a customer of ``locale`` finds a template, in order: ``sv_SE`` -> ``sv`` -> the
    shop's default (and its parents) -> ``en``, without repeats."""
    candidates = []
    for wanted in (locale, default_locale):
        if wanted:  # zh_Hant_TW, zh_Hant, zh
            parts = wanted.replace("-", "_").split("_")
            candidates += ["_".join(parts[:end]) for end in range(len(parts), 0, -1)]
    candidates.append("en")
    return list(dict.fromkeys(candidates))


def template_folders(config: Config) -> list[Path]:
    """The folders templates are read from, first match wins: the config's ``templates`` (if
    set), then the shipped ones (a shop's folder may override a few files only)."""
    folders = [shipped_templates()]
    if config.templates is not None:
        folders.insert(0, config.path(config.templates))
    return folders


def _loader(folders: Sequence[Path]) -> Any:
    from jinja2 import ChoiceLoader

    return ChoiceLoader([_loader_class()(str(folder)) for folder in folders])


def available_templates(folders: Sequence[Path]) -> frozenset[str]:
    """Every template file of ``folders`` (``sv/reminder-1.txt``), as a run's Renderer sees them:
    listed, not read nor compiled."""
    return frozenset(_loader(folders).list_templates())


def shipped_templates() -> Path:
    """The templates that come with cartrescue: the repository's top-level ``templates/``.

    A checkout (or editable install) reads them in place; a wheel carries them as the
    namespace package ``cartrescue.default_templates``. That package has no ``__init__``, so
    ``importlib.resources.files`` gives a ``MultiplexedPath`` whose ``str()`` is not a path:
    its real folders are read from the package's search locations instead.
    """
    checkout = Path(__file__).resolve().parents[2] / "templates"
    if (checkout / "_layout.html").is_file():
        return checkout
    import importlib.util

    spec = importlib.util.find_spec("cartrescue.default_templates")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location)
        if (folder / "_layout.html").is_file():
            return folder
    raise TemplateError("the templates shipped with cartrescue are missing from this installation "
                        "(reinstall cartrescue, or set `templates:` to a folder of your own)")


def _none_as_nothing(value: Any) -> Any:
    """``{{ customer.last_name }}`` of a cart without one: nothing, not "Dear Ann None"."""
    return "" if value is None else value


class PrintedNone(Exception):
    """Raised where a ``{{ value }}`` would print None: :meth:`Renderer.none_line` finds its line."""


def _none_refused(value: Any) -> Any:
    """A value as printed, except None: raised, so the traceback names the template line."""
    if value is None:
        raise PrintedNone("a value printed None")
    return value


@lru_cache(maxsize=256)
def _percent(value: Decimal, locale: str) -> str:
    """``10%`` in English, ``10 %`` in German, ``%10`` in Turkish: the locale's percent format,
    its decimal sign too (``12,5 %``)."""
    from babel import UnknownLocaleError
    from babel.numbers import format_percent

    try:
        return format_percent(value / 100, locale=locale, decimal_quantization=False)
    except (UnknownLocaleError, ValueError):
        return format_percent(value / 100, locale="en", decimal_quantization=False)


@lru_cache(maxsize=512)
def _money_formatter(locale: str, currency: str) -> Callable[[Decimal], str]:
    """Babel's currency format for ``locale`` (fast path: :mod:`cartrescue.compose.money`), made once per
    locale and currency: every message's context asks for it, and Babel's lookups behind it
    (the locale parsed, the currency's digits) took ~15 µs a message.

    HUF and KZT prices are whole numbers in practice: whole amounts drop the ``,00``.
    """
    from babel import Locale, UnknownLocaleError
    from babel.numbers import get_decimal_symbol

    from cartrescue.compose.money import money_formatter

    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError):
        locale = "en"
    if currency.upper() not in WHOLE_UNITS:
        return money_formatter(locale, currency)
    # Their minor unit as the locale writes it (Babel 2.19 gives HUF none: 1 249,50 Ft was 1 250 Ft)
    fast = money_formatter(locale, currency, minor_digits=True)
    fraction = get_decimal_symbol(locale) + "0" * Locale.parse(locale).currency_formats["standard"].frac_prec[1]

    def money(amount: Decimal) -> str:
        """A whole amount as shown (its minor digits all 0 once rounded): 4990.004 is 4 990 ₸,
        not 4 990,00 ₸ beside the whole amounts of the same message."""
        text = fast(amount)
        head, found, tail = text.rpartition(fraction)
        return head + tail if found else text

    return money


@lru_cache(maxsize=256)
def regional_locale(folder: str, wanted: str | None, default: str | None = None) -> str:
    """The locale a message writes its amounts and dates in: the customer's own (``en_GB``:
    ``23 November 2026``; ``de_CH``: ``CHF 1'234.50``) when the template ``folder`` is theirs or
    their language's (``en`` serves ``en_GB``), else the shop's ``default`` locale's when that is
    of the folder's language (a British shop's customers written ``en``, as Shopify writes them, or
    none), else the folder's. A folder is a language, and a shop in each country of it writes money
    and dates its own way; a customer who fell back to another language's folder (``pt_PT``
    reading ``en``) gets that language's, not their own numbers in a foreign sentence."""
    own = _region_of(folder, wanted)
    return _region_of(folder, default) if own == folder and default else own


def _region_of(folder: str, wanted: str | None) -> str:
    """``wanted`` as a locale of ``folder``'s language (``en_GB`` of ``en``), else ``folder``."""
    from babel import Locale, UnknownLocaleError

    parts = (wanted or "").replace("-", "_").split("_")
    if folder not in {"_".join(parts[:end]) for end in range(1, len(parts) + 1)}:
        return folder
    try:
        parsed = Locale.parse("_".join(parts))
    except (UnknownLocaleError, ValueError, TypeError):
        return folder
    return str(parsed) if parsed.language == folder.split("_")[0].lower() else folder


@lru_cache(maxsize=64)
def text_direction(locale: str) -> str:
    """``rtl`` for Arabic, Hebrew, Persian…, else ``ltr`` (CLDR's, so a template folder added for
    such a language lays its message out from the right without a template change)."""
    from babel import Locale, UnknownLocaleError

    try:
        return "rtl" if Locale.parse(locale).text_direction == "rtl" else "ltr"
    except (UnknownLocaleError, ValueError):
        return "ltr"


@lru_cache(maxsize=64)
def _date_formatter(locale: str) -> Callable[[date], str]:
    from babel import Locale, UnknownLocaleError
    from babel.dates import format_date

    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError):
        locale = "en"

    def formatted(value: date) -> str:
        return format_date(value, format="long", locale=locale)

    return formatted


def format_money(amount: Decimal, currency: str, locale: str) -> str:
    return _money_formatter(locale, currency)(amount)


def format_date(value: date, locale: str) -> str:
    return _date_formatter(locale)(value)


def _money_filter(context: Any, amount: Any, currency: Any = None) -> str:
    """``{{ 1234.5|money("SEK") }}`` -> ``1 234,50 kr`` in the message's locale. Without a currency
    (``{{ 12.5|money }}``) it says what it needs, not Python's "missing 1 required argument"."""
    if not isinstance(currency, str) or len(currency.strip()) != 3 or not currency.strip().isalpha():
        raise ValueError(f"money: the currency is a three-letter code such as \"EUR\" or cart.currency, "
                         f"not {currency!r}")
    try:
        number = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"money: {amount!r} is not an amount (cart.total, item.price and the like are "
                         "formatted already: print them as they are)") from None
    return format_money(number, currency.strip().upper(), context.get("format_locale") or context.get("locale") or "en")


def _date_filter(context: Any, value: Any) -> str:
    """``{{ some_datetime|date }}`` -> ``20 november 2026`` in the message's locale; an ISO date
    or time as text (``2026-11-20``) too. Anything else fails the message: Babel printed today's
    date for ``None``, and stopped the run on a date already formatted (``incentive.expires``)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"date: {value[:40]!r} is not a date (incentive.expires and the like are formatted "
                             "already: print them as they are)") from None
    if not isinstance(value, date):
        str(value)  # an undefined value (``incentive.expires`` of a step without one) fails as undefined
        raise ValueError(f"date: {value!r} is not a date")
    return format_date(value, context.get("format_locale") or context.get("locale") or "en")


#: Per message: items all ``range()`` calls of a render may produce together, characters of one
#: rendered part, and of one ``*`` product. A template (or data) that goes past them fails that
#: message alone, instead of hanging or exhausting the run.
MAX_RANGE_ITEMS = 100_000
# MAX_PART_CHARS and MAX_PRODUCT: cartrescue.compose.sandbox_limits, which also holds every value a
# template builds on the way to that limit.
#: Seconds of wall clock one message may take to render, its parts together: a loop that prints
#: nothing (``{% for a in x %}{% for b in y %}{% endfor %}{% endfor %}``) passes every other limit.
MAX_RENDER_SECONDS = 10.0
#: Bytes of memory one message's render may take on top of what the process held a tick
#: (:data:`RENDER_TICK_SECONDS`) into it: values kept in a list (``kept.append("x" * 99999)`` in a
#: loop) pass every size limit one by one, and took 4 GB in 5 s (a small server's kernel kills the run).
MAX_RENDER_MEMORY = 256 * 1024 * 1024
#: How often a render that is still running checks its clock and its memory (a message renders
#: in well under a millisecond: only a runaway one ever sees a tick).
RENDER_TICK_SECONDS = 0.1
#: Messages a part file may run out of time for in one process before its later messages fail at
#: once (unclaimed, as every render error: the next run tries them again). A loop that never
#: ends, whatever the cart, held a run 10 s a message: hours for a shop's thousand carts.
MAX_TIMEOUTS_PER_FILE = 3
#: Lines of a cart a message lists (``items``); the rest are counted (``cart.items_not_shown``).
#: A B2B cart of 3,000 lines went past MAX_PART_CHARS on every run, and one of 150 past the
#: ~102 KB at which Gmail clips a message, hiding the unsubscribe link at its foot.
MAX_ITEMS_SHOWN = 50
#: Entries one of a Renderer's memos of context values (money texts, links, images) keeps before
#: it starts over: a run repeats a catalogue's few hundred prices and URLs; a memo of a run of
#: unique values must not grow with it.
MEMO_ENTRIES = 4096

_TaggerKey = tuple[bool, "str | None", int, "str | None", "str | None", str]
# A (locale, currency)'s formatter, its texts by the amount's str, and an item's (unit price, line
# total) texts by its unit price's str and quantity.
_Moneys = tuple[Callable[[Decimal], str], dict[str, str], dict[tuple[str, int], tuple[str, str]]]


class Budget:
    """What one render may still spend; reset before every message."""

    __slots__ = ("range_items",)

    def __init__(self) -> None:
        self.range_items = MAX_RANGE_ITEMS

    def reset(self) -> None:
        self.range_items = MAX_RANGE_ITEMS

    def range(self, *args: int) -> range:
        numbers = range(*args)
        self.range_items -= len(numbers)
        if self.range_items < 0:
            raise TemplateError(f"range(): more than {MAX_RANGE_ITEMS} items in one message (a runaway loop?)")
        return numbers


class Deadline:
    """Stops a render that runs past :data:`MAX_RENDER_SECONDS`, or takes more than
    :data:`MAX_RENDER_MEMORY`, for that message alone.

    A ``SIGALRM`` interval timer (:data:`RENDER_TICK_SECONDS`), armed around each message in the
    main thread (the only one a signal handler runs in; renders elsewhere go without it), whose
    handler counts the ticks, reads the process's resident memory at each, and raises
    :class:`~cartrescue.errors.TemplateError` into the render at either limit. Arming and
    disarming cost two ``setitimer`` calls (~1 µs); the handler is installed on the first arm,
    and again only if another Renderer's took its place.
    """

    __slots__ = ("armed", "seconds", "memory", "_main", "_handler", "_depth", "_tick", "_ticks", "_left", "_base")

    def __init__(self, seconds: float | None = None, memory: int | None = None) -> None:
        self.armed = False
        self.seconds = MAX_RENDER_SECONDS if seconds is None else seconds
        self.memory = MAX_RENDER_MEMORY if memory is None else memory
        self._main = threading.main_thread().ident
        self._handler = self._expired  # one bound method, so that it can be recognised
        self._depth = 0  # ``with`` blocks open: the outermost arms and disarms (a check's SMS part nests)
        self._ticks = max(1, round(self.seconds / RENDER_TICK_SECONDS))  # the last one is the deadline
        self._tick = self.seconds / self._ticks
        self._left = 0  # ticks to the deadline, from arm()
        self._base = 0  # resident bytes at the render's first tick (0: not read yet)

    def __enter__(self) -> "Deadline":
        self._depth += 1
        if self._depth == 1:
            self.arm()
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self.armed:
            self.disarm()

    def arm(self) -> bool:
        """Start the clock (False, and nothing started, outside the main thread)."""
        if threading.get_ident() != self._main:
            return False
        # _signal's getsignal: signal.getsignal converts to an enum through an exception (~12 µs)
        if _signal.getsignal(signal.SIGALRM) is not self._handler:
            signal.signal(signal.SIGALRM, self._handler)
        self.armed = True
        self._left, self._base = self._ticks, 0
        signal.setitimer(signal.ITIMER_REAL, self._tick, self._tick)
        return True

    def disarm(self) -> None:
        self.armed = False  # first: an alarm already on its way is then ignored
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _expired(self, _signal_number: int, _frame: object) -> None:
        if not self.armed:
            return
        self._left -= 1
        if self._left <= 0:
            self.armed = False
            raise RenderTimeout(f"more than {self.seconds:g} s")
        resident = resident_bytes()
        if not self._base:
            self._base = resident
        elif resident - self._base > self.memory:
            self.armed = False
            raise RenderTimeout(f"more than {self.memory / 2**20:g} MiB of memory")


def resident_bytes() -> int:
    """The process's resident memory, from Linux's ``/proc/self/statm`` (0 elsewhere: no limit
    on memory there, only on time). Read only at a render's ticks, never per message."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class RenderTimeout(TemplateError):
    """A message ran out of :data:`MAX_RENDER_SECONDS` or :data:`MAX_RENDER_MEMORY` (``spent``,
    e.g. "more than 10 s"): :class:`Renderer` counts them per file."""

    def __init__(self, spent: str) -> None:
        super().__init__(f"the message took {spent} to render (a runaway loop?)")
        self.spent = spent


@lru_cache(maxsize=1)
def _loader_class() -> type[Any]:
    """Jinja's file loader, except that a file that is not UTF-8 (saved as Latin-1 or cp1252 by
    an editor) is a syntax error of that file at the line of its first bad byte: Jinja's bare
    UnicodeDecodeError named neither the file nor the line, and stopped `templates check` as an
    internal error, unchecked templates and all. A byte-order mark ("UTF-8 with BOM", which
    some editors save) is not text: it went out as the first character of the subject and the
    text, and made a text message UCS-2, three segments where one would do."""
    from jinja2 import FileSystemLoader, TemplateSyntaxError

    class Utf8Loader(FileSystemLoader):
        def get_source(self, environment: Any, template: str) -> Any:
            try:
                source, filename, uptodate = super().get_source(environment, template)
                return source.removeprefix("\ufeff"), filename, uptodate
            except UnicodeDecodeError as chunk:  # its offset is within one chunk of the file
                paths = (Path(folder, *template.split("/")) for folder in self.searchpath)
                raw = next(path for path in paths if path.is_file()).read_bytes()
                try:
                    raw.decode("utf-8")
                    error = chunk
                except UnicodeDecodeError as whole:
                    error = whole
                line = raw.count(b"\n", 0, error.start) + 1
                raise TemplateSyntaxError(f"not UTF-8 text (byte 0x{error.object[error.start]:02x}): save the "
                                          "file as UTF-8", line, template) from None

    return Utf8Loader


def _sandbox_class() -> type[Any]:
    """The sandbox, with a fast path for what nearly every lookup in our templates is, and limits.

    ``{{ shop.name }}`` compiles to ``environment.getattr(shop, "name")``. The stock sandbox tries
    ``getattr(dict, "name")`` first, which raises (an exception per lookup), and only then falls
    back to ``shop["name"]``. For a plain ``dict`` and a name that is not one of dict's own
    attributes that fallback is the certain outcome, so it is taken directly: same result, same
    undefined on a missing key, no exception (the compiled templates take the same shortcut
    inline: :func:`~cartrescue.compose.sandbox_limits.code_generator_class`). Everything else
    (``items.append``, objects) goes through the stock checks unchanged.

    ``*`` and ``**`` are intercepted so that ``"x" * 10**9`` or ``9 ** 9 ** 9`` fails the one
    message instead of taking the process's memory or time.
    """
    from jinja2.runtime import Macro as macro_type
    from jinja2.sandbox import SandboxedEnvironment

    class FastDictSandbox(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})
        code_generator_class = code_generator_class()  # ~ joins bounded(), fast_escape, dict lookups inline
        bounded = staticmethod(bounded)
        fast_escape = staticmethod(fast_escape())  # the compiled templates' escape
        escape_str = staticmethod(escape_str())  # ... and of a plain str, inline

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.filters.update(bounded_filters(self.filters))  # replace, center, join ...: sizes checked
            self._loaded: dict[str, Any] = {}  # see _load_template

        def _load_template(self, name: str, globals: Any) -> Any:
            """A template loaded before, from a plain dict: every HTML part asks for its layout
            and its macros again (``{% extends %}``, ``{% from ... import %}``), and Jinja's
            LRU cache takes a lock, a weak reference and a queue search for each. The same
            Template as Jinja's cache gives (``auto_reload`` is off: a file is never read again)."""
            if not globals and not self.auto_reload:
                template = self._loaded.get(name)
                if template is not None:
                    return template
            template = super()._load_template(name, globals)
            self._loaded[name] = template
            return template

        def getattr(self, obj: Any, attribute: str) -> Any:
            if type(obj) is dict and attribute not in DICT_ATTRIBUTES:
                try:
                    return obj[attribute]
                except KeyError:
                    return self.undefined(obj=obj, name=attribute)
            return super().getattr(obj, attribute)

        def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            """A macro straight away: the stock sandbox would ask whether it is safe (it is: a
            macro runs sandboxed code) and then ``Context.call``, which looks for a
            ``pass_context`` mark a macro never has. What remains of both is done here: drop the
            loop and block variables the compiled call passes along, and turn a StopIteration
            into an undefined value."""
            if type(obj) is macro_type:
                kwargs.pop("_block_vars", None)
                kwargs.pop("_loop_vars", None)
                try:
                    return obj(*args, **kwargs)
                except StopIteration:
                    return self.undefined("value was undefined because a callable raised a StopIteration exception")
            owner = getattr(obj, "__self__", None)
            if isinstance(owner, str):  # "x".ljust(10**9): refused before it is made
                args = str_call_args(owner, obj.__name__, args, kwargs)
            return super().call(context, obj, *args, **kwargs)

        def make_globals(self, d: Any) -> dict[str, Any]:
            """Each template's globals as one plain dict (the environment's, under the template's
            own), not Jinja's ChainMap over both: every render builds a context from them and every
            ``{% from ... import %}`` compares them, and a ChainMap is iterated and searched in
            Python, a dict in C. The Renderer sets its globals before it loads any template, so
            the copy never misses a later change."""
            return {**self.globals, **(d or {})}

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            return binop(operator, left, right)

        def wrap_str_format(self, value: Any) -> Any:
            """``"{:>999999999}".format(x)``: the width is checked before the sandbox formats."""
            wrapped = super().wrap_str_format(value)
            if wrapped is None:
                return None

            def checked(*args: Any, **kwargs: Any) -> Any:
                check_format(getattr(value, "__self__", None))
                return wrapped(*args, **kwargs)

            return checked

    return FastDictSandbox


def printed_none(text: str) -> bool:
    """``"None" in text``, for a rendered part (see :meth:`Renderer._render_variables`).

    Searched from the first capital N, found by ``find`` of one character (a ``memchr``): the
    substring search of ``in`` compares nearly every character (the word's last letter, ``e``,
    is the commonest), and about half the parts of a run have no N at all. Counted on the
    parts of 364 sample messages: ~4,800 instructions a message instead of ~15,800.
    """
    first = text.find("N")
    return first >= 0 and text.find("None", first) >= 0


class Renderer:
    """Renders the templates of one config; build one per run (it caches compiled templates)."""

    def __init__(self, config: Config, *, none_shown: bool = False) -> None:
        """``none_shown``: a ``{{ value }}`` that is None prints ``None`` (``templates check`` and
        ``doctor`` look for it, a template bug); otherwise nothing, as a customer must see it."""
        from jinja2 import TemplateError as JinjaError

        self.shop = config.shop
        self.links = config.links
        self._untagged = config.links.model_copy(update={"utm": False})  # links: safe, without UTM tags
        self.folders = template_folders(config)
        self.budget = Budget()
        self.deadline = Deadline()
        self.env = self._environment()
        self._available = available_templates(self.folders)
        self._locale_cache: dict[tuple[str | None, str, str], str] = {}
        self._templates: dict[str, Any] = {}  # file -> compiled
        # The variables every part sees besides its context: its environment's globals (a part is
        # loaded without globals of its own; the environment where None prints nothing has the
        # same ones), merged with a message's context once for all its parts (see _render_in).
        self._globals = dict(self.env.globals)
        # A part that printed "None" is rendered again in an environment whose None prints
        # nothing ("Dear Ann None" is a template's bug the customer must not see): made when
        # first needed, so the messages without it pay one substring search, not a call per value.
        self._none_shown = none_shown
        self._blank: tuple[Any, dict[str, Any]] | None = None
        self._refusing: tuple[Any, dict[str, Any]] | None = None  # see none_line
        self._files: dict[tuple[str, str, str | None], tuple[str, ...]] = {}  # (template, locale, variant) -> parts
        self._sms_files: dict[tuple[str, str, str | None], str] = {}  # (template, locale, variant) -> its .sms.txt
        # part file -> messages it ran out of time or memory for (MAX_TIMEOUTS_PER_FILE), and the last one's limit
        self._timeouts: dict[str, int] = {}
        self._spent: dict[str, str] = {}
        self._jinja_error: type[Exception] = JinjaError
        self._expiries: dict[tuple[date, str], str] = {}  # see _expiry
        # What the contexts of earlier messages of this run computed (see context), each memo
        # bounded by MEMO_ENTRIES: money texts per (locale, currency), and per tagging (sequence,
        # step, variant, tier, channel) its tag, the context's shop values (its tagged URL) and
        # the tagged product links.
        self._moneys: dict[tuple[str, str], _Moneys] = {}
        self._taggers: dict[_TaggerKey, tuple[Tag, dict[str, Any], dict[str | None, str | None]]] = {}
        self._images: dict[str | None, str | None] = {}  # image URL -> safe_url()

    def _environment(self, finalize: Callable[[Any], Any] | None = None) -> Any:
        from jinja2 import StrictUndefined, pass_context

        env = _sandbox_class()(
            loader=_loader(self.folders),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name) and name.endswith(".html"),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,  # one Renderer per run: never stat a template file again mid-run
            finalize=finalize,
        )
        env.filters["money"] = pass_context(_money_filter)
        env.filters["date"] = pass_context(_date_filter)
        env.globals["range"] = self.budget.range
        env.bytecode_cache = bytecode_cache(env)  # compiled once, kept between runs
        return env

    def locales(self) -> list[str]:
        """Locales that have at least one template."""
        return sorted({name.split("/")[0] for name in self._available if "/" in name})

    def resolve_locale(self, locale: str | None, template: str, part: str = "subject.txt") -> str:
        """``sv_SE`` -> ``sv`` -> the shop's default, whichever has the template (its ``part``:
        the subject for a message, ``sms.txt`` for a text message)."""
        key = (locale, template, part)
        cached = self._locale_cache.get(key)
        if cached is not None:
            return cached
        candidates = locale_candidates(locale, self.shop.default_locale)
        for candidate in candidates:
            if f"{candidate}/{template}.{part}" in self._available:
                self._locale_cache[key] = candidate
                return candidate
        raise TemplateError(f"template {template!r}: no locale of {candidates} has {template}.{part}")

    def part_file(self, template: str, locale: str, part: str, variant: str | None = None) -> str:
        """The file that renders ``part``: the variant's own file if there is one, else the base."""
        return part_file(self._available, template, locale, part, variant)

    def variant_locales(self, template: str, variant: str, parts: Sequence[str]) -> set[str]:
        """The locales with a file of ``variant``'s own among ``parts`` of ``template``
        (``sv/reminder-1@b.subject.txt``): where its customers read it, not the control's."""
        ends = tuple(f"/{template}@{variant}.{part}" for part in parts)
        return {name.split("/", 1)[0] for name in self._available if name.endswith(ends) and name.count("/") == 1}

    def render_file(self, name: str, context: dict[str, Any]) -> str:
        """One file as a message's part is rendered (its limits included), Jinja's errors as
        raised: :meth:`_render_in` this Renderer's environment; a part that printed ``None``
        again, in one where None prints nothing (unless ``none_shown``). Call
        ``budget.reset()`` first, once per message."""
        return self._render_variables(name, self._variables(context))

    def render_file_blank(self, name: str, context: dict[str, Any]) -> str:
        """:meth:`render_file` where a None value prints nothing, whatever ``none_shown``: the
        words ``None`` left are the template's own text ("None of the items ...", which
        ``templates check`` must not call a None printed by a value)."""
        return self._render_in(*self._blank_environment(), name, self._variables(context))

    def none_line(self, name: str, context: dict[str, Any]) -> tuple[str, int | None]:
        """The file and line of the first ``{{ value }}`` of ``name`` (or of a file it includes)
        that prints a None with ``context``: ``templates check`` names where a leak comes from,
        not only the words around it. ``(name, None)`` when none is found so (the words ``None``
        made otherwise, ``{{ "x" ~ none }}``). Called on a leak only."""
        if self._refusing is None:
            self._refusing = (self._environment(_none_refused), {})
        try:
            self._render_in(*self._refusing, name, self._variables(context))
        except PrintedNone as exc:
            return template_frame(exc, self.folders, name)
        except Exception:  # noqa: BLE001 - it rendered before; whatever fails now names no None
            pass
        return name, None

    def _blank_environment(self) -> tuple[Any, dict[str, Any]]:
        """The environment where a None value prints nothing, and its compiled templates: made
        when first needed (most runs print no "None")."""
        if self._blank is None:
            self._blank = (self._environment(_none_as_nothing), {})
        return self._blank

    def _variables(self, context: dict[str, Any]) -> dict[str, Any]:
        """What a part's template sees: the globals, under ``context``."""
        return {**self._globals, **context}

    def _render_variables(self, name: str, variables: dict[str, Any]) -> str:
        """:meth:`render_file` of a context already merged by :meth:`_variables`."""
        text = self._render_in(self.env, self._templates, name, variables)
        if printed_none(text) and not self._none_shown:
            text = self._render_in(*self._blank_environment(), name, variables)
        return text

    def _render_in(self, environment: Any, templates: dict[str, Any], name: str, variables: dict[str, Any]) -> str:
        """``Template.render(context)``, minus its per-call overhead.

        ``render`` copies the template's globals (a ChainMap, slow to iterate) and the context
        into a new dict on every call. Here ``variables`` holds both already (:meth:`_variables`,
        once per message) and is passed with ``new_context(shared=True)``, which Jinja documents
        as "the data is passed as is, without adding the globals": the same variables reach
        the template, at a third of the cost for a short part such as the subject. Jinja never
        writes to that dict (a template's ``{% set %}`` goes to its own context's ``vars``), so
        a message's parts can share it: nothing one part sets reaches the next. The context is
        made as ``new_context(variables, shared=True)`` makes it, without its two calls on the
        way: the environment's ``context_class`` given the shared dict, the template's name,
        blocks and globals (Jinja's own ``new_context`` adds nothing else without ``locals``).
        """
        template = templates.get(name)
        if template is None:
            template = templates[name] = environment.get_template(name)
        env = template.environment
        try:
            run = env.context_class(env, variables, name, template.blocks, template.globals)
            # Joined a block of pieces at a time (in C), so a runaway loop is stopped after a block,
            # not after filling the memory; a normal part is one or two blocks.
            pieces = template.root_render_func(run)  # type: ignore[attr-defined]
            blocks = []
            size = 0
            while block := list(islice(pieces, 256)):
                text = "".join(block)
                size += len(text)
                if size > MAX_PART_CHARS:
                    raise TemplateError(f"{name}: more than {MAX_PART_CHARS} characters rendered (a runaway loop?)")
                blocks.append(text)
            return blocks[0] if len(blocks) == 1 else "".join(blocks)
        except TemplateError:  # a limit (time, range()) met in the template: its lines in the traceback
            env.handle_exception()  # (template_frame names the line)
            raise  # not reached
        except Exception:
            env.handle_exception()  # as Template.render does: re-raises with the template's traceback
            raise  # not reached

    def render(self, template: str, locale: str, context: dict[str, Any], variant: str | None = None) -> Rendered:
        files = self._files.get((template, locale, variant))
        if files is None:
            files = self._files[(template, locale, variant)] = tuple(
                self.part_file(template, locale, part, variant) for part in PARTS)
        self.budget.reset()
        variables = self._variables(context)
        subject_file, text_file, html_file = files
        with self.deadline:
            # The text and HTML parts see the subject line as rendered (``<title>``), once per message
            subject = variables["subject"] = subject_line(self._render_part(subject_file, variables))
            text = self._render_part(text_file, variables)
            html = self._render_part(html_file, variables)
        return _rendered(subject, text, html, locale, files)

    def used_files(self) -> set[tuple[str, ...]]:
        """The files of every message this Renderer rendered, once each: a message's parts
        (subject, text, HTML) or a text message's file. Read from the caches :meth:`render`
        and :meth:`render_sms` keep anyway, so a run pays nothing per message for it (a
        dry-run checks these templates once: :func:`cartrescue.template_check.lint_used`)."""
        return set(self._files.values()) | {(name,) for name in self._sms_files.values()}

    def _expiry(self, day: date, locale: str) -> str:
        """An incentive's last day (the shop's), formatted once per run and locale (Babel takes
        ~50 µs a date; every message of a step shares it)."""
        key = (day, locale)
        text = self._expiries.get(key)
        if text is None:
            text = self._expiries[key] = format_date(day, locale)
        return text

    def render_sms(self, template: str, locale: str, context: dict[str, Any], variant: str | None = None,
                   max_segments: int | None = None, *, raw_errors: bool = False) -> str:
        """The text of an SMS step (``<locale>/<template>.sms.txt``, a variant's own file first),
        surrounding whitespace removed: every character is paid for.

        Values from cart data are put on one line first (a name with a newline must not start a
        line of the text, nor a control character reach a phone), and a customer name that makes
        the text longer than ``max_segments`` (500 emoji) is left out rather than the message.
        ``raw_errors``: Jinja's errors as raised, as :meth:`render_file` gives them (``templates
        check`` reads their kind and line), not one TemplateError.
        """
        from cartrescue.sms_text import measure, one_line, plain

        customer = context["customer"]
        for key in ("first_name", "last_name", "greeting_name"):
            if customer[key]:
                customer[key] = one_line(customer[key])[:60] or None
        for item in context["items"]:
            item["name"] = one_line(item["name"])
        name = self._sms_files.get((template, locale, variant))
        if name is None:
            name = self._sms_files[(template, locale, variant)] = self.part_file(template, locale, SMS_PART, variant)
        render = self._render_variables if raw_errors else self._render_part
        variables = self._variables(context)  # its customer is context's: the update below reaches it
        self.budget.reset()
        with self.deadline:
            text = plain(render(name, variables)).strip()
            if max_segments is not None and (customer["first_name"] or customer["last_name"]) \
                    and measure(text).segments > max_segments:
                customer.update(first_name=None, last_name=None, greeting_name=None)
                self.budget.reset()
                text = plain(render(name, variables)).strip()
        return text

    def _render_part(self, name: str, variables: dict[str, Any]) -> str:
        """One file rendered (``variables``: :meth:`_variables`); every error of this cart's data
        becomes a TemplateError naming it. A file that ran out of time or memory for
        :data:`MAX_TIMEOUTS_PER_FILE` messages fails at once: the run goes on without the wait."""
        if self._timeouts.get(name, 0) >= MAX_TIMEOUTS_PER_FILE:
            raise TemplateError(f"{name}: not rendered: it took {self._spent[name]} for "
                                f"{MAX_TIMEOUTS_PER_FILE} messages of this run already (a runaway loop?)")
        try:
            return self._render_variables(name, variables)
        except self._jinja_error as exc:
            if getattr(exc, "lineno", None):  # a syntax error knows its line
                file, line = getattr(exc, "name", None) or name, exc.lineno  # type: ignore[attr-defined]
            else:  # an undefined value met while rendering: the line is in the traceback
                file, line = template_frame(exc, self.folders, name)
            where = f"{file}:{line}" if line else name
            raise TemplateError(f"{where}: {self.explain(exc, file, line, variables)}") from None
        except TemplateError as exc:
            if isinstance(exc, RenderTimeout):
                self._timeouts[name] = self._timeouts.get(name, 0) + 1
                self._spent[name] = exc.spent
            if str(exc).startswith(name):
                raise TemplateError(str(exc)) from None
            file, line = template_frame(exc, self.folders, name)
            raise TemplateError(f"{file}:{line}: {exc}" if line else f"{name}: {exc}") from None
        except Exception as exc:
            # A template's own mistake met with this cart's data ({{ 1 / items|length }} on an
            # empty list, a filter given what it cannot take, ...): this message fails, the run
            # goes on. Whatever it raised: an AssertionError from inside a filter stopped the
            # whole run as an internal error. It names the template line (Jinja's traceback
            # carries it), as `templates check` does.
            if isinstance(exc, CartrescueError):
                raise
            file, line = template_frame(exc, self.folders, name)
            raise TemplateError(f"{file}:{line}: {type(exc).__name__}: {exc}" if line else
                                f"{name}: {type(exc).__name__}: {exc}") from None

    def explain(self, exc: Exception, file: str, line: int | None, variables: dict[str, Any]) -> str:
        """Jinja's message of ``exc`` (met at ``file``:``line``), with what a developer needs to fix
        a typo: the path that is undefined and the close names that exist (``'cart.totl' is
        undefined: cart has no 'totl' (did you mean cart.total?)``), the close filter, or the close
        file of a missing layout or include. Called on an error only: a message rendered costs
        nothing for it. Should working it out fail, Jinja's message as it is: a hint must never
        turn one message's render error into a stopped run."""
        try:
            return self._explained(exc, file, line, variables)
        except Exception:  # noqa: BLE001 - see above
            return str(getattr(exc, "message", None) or exc)

    def _explained(self, exc: Exception, file: str, line: int | None, variables: dict[str, Any]) -> str:
        from jinja2 import TemplateNotFound

        if isinstance(exc, TemplateNotFound):
            if exc.name == file and "/" in file:  # a part of the message itself, not a layout or include
                return missing_part(file)
            return f"no template file {exc.name}{did_you_mean(str(exc.name), self._available)}"
        message = str(getattr(exc, "message", None) or exc)
        unknown = _UNKNOWN_FILTER.match(message)
        if unknown is not None:
            kind, wanted = unknown.group(1), unknown.group(2)
            known = self.env.filters if kind == "filter" else self.env.tests
            return f"No {kind} named {wanted!r}{did_you_mean(wanted, known) or '.'}"
        try:
            source = self.env.loader.get_source(self.env, file)[0]
        except Exception:  # noqa: BLE001 - a file that cannot be read again: Jinja's message as it is
            return message
        innermost = _INNERMOST.search(message)
        if innermost is not None:
            opened = open_block_line(self.env, source, innermost.group(1), line)
            return f"{message} (the {{% {innermost.group(1)} %}} of line {opened})" if opened else message
        return undefined_message(message, source, line, variables)

    def context(
        self,
        cart: Cart,
        *,
        locale: str,
        step: int,
        step_count: int,
        tier: str | None,
        previous_orders: int,
        unsubscribe_url: str,
        incentive: Incentive | None,
        now: datetime,
        variant: str | None = None,
        code: str | None = None,
        survey: dict[str, Any] | None = None,
        sequence: str | None = None,
        channel: str = "email",
        tags: bool = True,
        expires_on: date | None = None,
    ) -> dict[str, Any]:
        """The template context (docs/templates.md). Every URL from data passes
        :mod:`cartrescue.compose.links`: only http(s) reaches a link or an image, and links carry UTM tags.
        ``expires_on``: the last day of an allocated code, as the ledger recorded it (a message
        sent again days later must not promise more); without one, the shop's day of delivery +
        ``valid_for`` (:func:`cartrescue.compose.incentives.last_valid_day`)."""
        tagging = (tags, sequence, step, variant, tier, channel)
        tagged = self._taggers.get(tagging)
        link = tagger(self.links if tags else self._untagged, sequence, step, variant, tier, channel) \
            if tagged is None else tagged[0]
        customer = cart.customer
        # Amounts and dates: en_GB's in the en folder; else those of the shop's default locale's region.
        region = regional_locale(locale, customer.locale, self.shop.default_locale)
        moneys = self._moneys.get((region, cart.currency))
        if moneys is None:
            moneys = _bounded_put(self._moneys, (region, cart.currency), (_money_formatter(region, cart.currency), {}, {}))
        money, texts, lines = moneys
        shop = self.shop
        if tagged is None:
            tagged = _bounded_put(self._taggers, tagging, (link, {
                "name": shop.name, "url": link(shop.url) or shop.url,
                "support_email": shop.support_email or shop.from_email,
                "support_phone": shop.support_phone, "address": shop.address, "returns": shop.returns,
                "logo_url": shop.logo_url,
            }, {}))
        shop_values, links = tagged[1], tagged[2]
        offer = None
        if incentive is not None:
            from cartrescue.compose.incentives import last_valid_day  # the ledger's machinery: only where an offer is

            if incentive.kind == "percent":
                value = _percent(incentive.value, region)
            elif incentive.kind == "fixed":
                value = _memo_money(money, texts, incentive.value)
            else:
                value = ""
            offer = {
                "kind": incentive.kind,
                "value": value,
                "code": code or incentive.code,
                "expires": self._expiry(expires_on or last_valid_day(now, incentive.valid_for, shop.tz), region),
            }
        images = self._images
        items = []
        item_count = 0
        has_images = False
        for item in cart.items if len(cart.items) <= MAX_ITEMS_SHOWN else cart.items[:MAX_ITEMS_SHOWN]:
            price = item.unit_price
            quantity = item.quantity
            item_count += quantity
            try:
                unit_price, line_total = lines[(str(price), quantity)]
            except KeyError:
                unit_price, line_total = money(price), money(item.line_total)
                if isinstance(price, Decimal) and price.is_finite() and price:
                    _bounded_put(lines, (str(price), quantity), (unit_price, line_total))
            image = item.image_url
            try:
                image_url = images[image]
            except KeyError:
                image_url = _bounded_put(images, image, safe_url(image))
            if image_url is not None:
                has_images = True
            product = item.product_url
            try:
                product_url = links[product]
            except KeyError:
                product_url = _bounded_put(links, product, link(product))
            items.append({
                "name": item.name, "sku": item.sku, "quantity": quantity,
                "unit_price": unit_price, "line_total": line_total,
                "image_url": image_url, "product_url": product_url,
            })
        if len(cart.items) > MAX_ITEMS_SHOWN:
            item_count = sum(item.quantity for item in cart.items)
        total = _memo_money(money, texts, cart.total)
        first_name, last_name = shown_name(customer.first_name, customer.last_name)  # never a bot's advert
        return {
            "shop": shop_values.copy(),  # a new dict per message: a template may change its context, never the next message's
            "customer": {
                "first_name": first_name, "last_name": last_name,
                "greeting_name": first_name or None, "email": customer.email,
                "is_returning": previous_orders > 0, "previous_orders": previous_orders,
            },
            "cart": {
                "id": cart.id, "currency": cart.currency, "total": total,
                "item_count": item_count, "has_images": has_images,
                "items_not_shown": len(cart.items) - len(items),
            },
            "items": items,
            "recovery_url": link(cart.recovery_url) or shop_values["url"],
            "unsubscribe_url": unsubscribe_url,
            "step": {"number": step, "count": step_count},
            "tier": tier,
            "incentive": offer,
            "locale": locale,
            "format_locale": region,
            "direction": text_direction(locale),
            "variant": variant,
            "survey": survey,  # None, or the question and one signed link per reason (cartrescue.survey.links)
        }


def _bounded_put(memo: dict[Any, Any], key: Any, value: _V) -> _V:
    """``memo[key] = value``, the memo emptied first when full (:data:`MEMO_ENTRIES`): a run's
    values mostly repeat, but not all (recovery URLs, totals), and a memo must not grow with them."""
    if len(memo) >= MEMO_ENTRIES:
        memo.clear()
    memo[key] = value
    return value


def _memo_money(money: Callable[[Decimal], str], texts: dict[str, str], amount: Decimal) -> str:
    """``money(amount)``, from ``texts`` when an earlier message showed the same amount. Keyed by
    the amount's str, which is the Decimal exactly (its sign and exponent): ``0``, ``-0`` and
    ``0.00`` are equal Decimals (one dict key) but may be shown differently. Only a finite,
    non-zero Decimal is kept: not zeros, not infinities or NaN, nothing whose formatting raised."""
    key = str(amount)
    text = texts.get(key)
    if text is None:
        text = money(amount)
        if isinstance(amount, Decimal) and amount.is_finite() and amount:
            _bounded_put(texts, key, text)
    return text


#: Jinja's words for an unknown filter or test: at compile time ("No filter named 'x'."), or at
#: render time inside an ``{% if %}`` ("No filter named 'x' found.").
_UNKNOWN_FILTER = re.compile(r"No (filter|test) named '([^']+)'(?: found)?\.$")
#: Jinja's words for an undefined name and an undefined attribute of a value.
_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined$")
#: The names a template file makes: ``{% from "_macros.html" import a, b as c %}`` (group 1), and
#: ``{% set x``, ``{% macro m(``, ``{% for x in`` (group 2).
_DEFINED = re.compile(r"\{%-?\s*(?:from\s+\S+\s+import\s+([^%]+?)\s*-?%\}|(?:set|macro|for)\s+(\w+))")
_UNDEFINED_ATTRIBUTE = re.compile(r"'[^']+' has no attribute '([^']+)'$")


#: Jinja's words for a block left open ("The innermost block that needs to be closed is 'if'.").
_INNERMOST = re.compile(r"The innermost block that needs to be closed is '(\w+)'\.")
#: The tags that open a block closed by ``end<tag>`` (``set`` only without ``=``).
_BLOCK_TAGS = frozenset({"if", "for", "block", "macro", "call", "filter", "with", "autoescape", "raw", "trans", "set"})


def open_block_line(env: Any, source: str, tag: str, line: int | None) -> int | None:
    """The line of the innermost ``{% tag %}`` still open before ``line`` (Jinja names the line
    where it noticed, the file's end for an unclosed ``{% if %}``), or None if lexing fails."""
    try:
        tokens = [(number, kind, value) for number, kind, value in env.lex(source)
                  if kind != "whitespace" and (line is None or number <= line)]
    except Exception:  # noqa: BLE001 - a source the lexer refuses: no line to add
        return None
    stack: list[tuple[str, int]] = []
    for index, (number, kind, value) in enumerate(tokens[:-1]):
        if kind != "block_begin" or tokens[index + 1][1] != "name":
            continue
        name = tokens[index + 1][2]
        if name == "set":  # {% set x = 1 %} is a statement; {% set x %}…{% endset %} a block
            rest = tokens[index + 2:]
            end = next((i for i, token in enumerate(rest) if token[1] == "block_end"), len(rest))
            if any(token[1:] == ("operator", "=") for token in rest[:end]):
                continue
        if name in _BLOCK_TAGS:
            stack.append((name, number))
        elif name.startswith("end") and stack and stack[-1][0] == name[3:]:
            stack.pop()
    return next((number for name, number in reversed(stack) if name == tag), None)


def missing_part(name: str) -> str:
    """Why ``de/reminder-1.html`` is looked for, and what to do: a customer reads every part from
    the folder that has the template's subject (docs/templates.md), so the close names of other
    folders or steps (``ru/reminder-1.html``) would be no fix."""
    folder, _, file = name.partition("/")
    template = file.split(".")[0].split("@")[0]
    return (f"no such file: the {folder} folder has {template}.subject.txt, so its customers get every part of "
            f"{template} from there (add {folder}/{file})")


def did_you_mean(wanted: str, names: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean total?)`` for the names close to ``wanted`` (difflib), else ``""``.
    The cutoff (0.7) takes "totl", "nmae", "frist_name", "shpo", not "items" for "items_table".
    Case is ignored in the comparison: difflib finds nothing of "b" in "B" (``--variant B``)."""
    import difflib

    folded: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        folded.setdefault(name.casefold(), []).append(name)
    keys = difflib.get_close_matches(wanted.casefold(), folded, n=3, cutoff=0.7)
    close = [name for key in keys for name in folded[key]][:3]
    return f" (did you mean {' or '.join(prefix + name for name in close)}?)" if close else ""


def undefined_message(message: str, source: str, line: int | None, variables: dict[str, Any]) -> str:
    """Jinja's undefined ``message`` said with the path the template wrote (read from its
    ``source`` at ``line``) and the names there are. A name the message's values have that is
    undefined all the same is met in a macro of an imported file (Jinja imports without the
    context): that is said, not "did you mean shop?" of ``shop`` itself. ``item.nmae`` of a ``{% for item in items
    %}`` loop is looked up in ``items``' first line. ``message`` as it is when the path cannot be
    found or resolved (a value the template built itself)."""
    named = _UNDEFINED_NAME.fullmatch(message)
    if named is not None and named.group(1) in variables:  # "did you mean shop?" of shop itself
        return (f"{message} here: a macro of an imported file sees only its arguments, not the message's "
                f"values: pass {named.group(1)} to the macro, or import it with context "
                "({% from \"_macros.html\" import name with context %})")
    if named is not None:  # the context's names, and those the file imports, sets or defines
        own = [name.split(" as ")[-1].strip() for imported, made in _DEFINED.findall(source)
               for name in (imported.split(",") if imported else [made])]
        return message + did_you_mean(named.group(1), [*variables, *own])
    attribute = _UNDEFINED_ATTRIBUTE.fullmatch(message)
    lines = source.splitlines()
    if attribute is None or not line or line > len(lines):
        return message
    name = re.escape(attribute.group(1))
    written = re.compile(rf"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\.{name}|\[\s*(['\"]){name}\2\s*\])(?!\w)")
    loops = dict(re.findall(r"\{%-?\s*for\s+(\w+)\s+in\s+([A-Za-z_][\w.]*)", source))
    for match in written.finditer(lines[line - 1]):
        path = match.group(1)
        found, value = _resolve(path, variables, loops)
        if not found:
            continue
        full = f"{path}.{attribute.group(1)}"
        if value is None:
            return f"{full!r} is undefined: {path} is None here (test it first: {{% if {path} %}})"
        if isinstance(value, dict) and attribute.group(1) not in value:
            keys = [str(key) for key in value]
            hint = did_you_mean(attribute.group(1), keys, f"{path}.") or f" (it has: {', '.join(sorted(keys))})"
            return f"{full!r} is undefined: {path} has no {attribute.group(1)!r}{hint}"
    return message


def _resolve(path: str, variables: dict[str, Any], loops: dict[str, str], depth: int = 0) -> tuple[bool, Any]:
    """(True, the value of ``path``) in ``variables``, a loop's variable standing for the first
    value of what it loops over (``loops``: variable -> iterated path); (False, None) if unknown."""
    head, *rest = path.split(".")
    if head in variables:
        value = variables[head]
    elif head in loops and depth < 5:
        found, values = _resolve(loops[head], variables, loops, depth + 1)
        if not found or not isinstance(values, (list, tuple)) or not values:
            return False, None
        value = values[0]
    else:
        return False, None
    for key in rest:
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def template_frame(exc: BaseException, folders: Sequence[Path], fallback: str) -> tuple[str, int | None]:
    """The innermost template file and line of a rendering error (Jinja rewrites tracebacks)."""
    found: tuple[str, int | None] = (fallback, None)
    roots = [str(folder.resolve()) for folder in folders]
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        for root in roots:
            if filename.startswith(root + "/"):
                found = (filename[len(root) + 1:], tb.tb_lineno)
        tb = tb.tb_next
    return found


#: Channels a step's message is rendered for as an e-mail (subject, text, HTML); ``sms``
#: renders ``<template>.sms.txt``; the call list renders nothing.
_EMAIL_PARTS_FOR = frozenset({"email", "webhook"})
_BY_NUMBER = frozenset({"sms", "call-list"})


def step_parts(config: Config, sequence: str, step: int) -> list[tuple[tuple[str, ...], str]]:
    """The part sets step ``step`` (0-based) of ``sequence`` renders for the tiers that use it,
    each with why where it is not plain: the e-mail's :data:`PARTS` where a tier sends it by
    e-mail or webhook, or where a text or call step goes by e-mail instead
    (``eligibility.channel_fallback``, a tier's ``over_budget: email``); :data:`SMS_PART` where
    a tier texts it. A sequence no tier uses renders nothing."""
    the_step = config.sequences[sequence].steps[step]
    uses = [(tier, the_step.channel_for(tier)) for tier in config.priority.tiers if tier.sequence == sequence]
    mailed = any(channel in _EMAIL_PARTS_FOR for _tier, channel in uses)
    instead = [tier.name for tier, channel in uses if channel in _BY_NUMBER and (
        config.eligibility.channel_fallback or tier.over_budget == "email")]
    parts: list[tuple[tuple[str, ...], str]] = []
    if mailed or instead:
        parts.append((PARTS, "" if mailed else f" (tier {instead[0]}'s text or call of this step goes by e-mail "
                      "to a cart it cannot reach: eligibility.channel_fallback, or over_budget: email)"))
    if any(channel == "sms" for _tier, channel in uses):
        parts.append(((SMS_PART,), ""))
    return parts


def require_step_templates(config: Config) -> None:
    """ConfigError, naming the step's key and the folder, for the first step whose template files
    are missing where every customer's locale falls back to (the shop's ``default_locale``, then
    ``en``: :func:`locale_candidates`): a run would fail each of its carts with a render error
    when the step came due, and say nothing before. Only listed, never rendered (``templates
    check`` renders); other locale folders may lack a template (their customers get the default's).
    A step with A/B variants needs, per arm, its own file or the base one (:func:`part_file`)."""
    folders = template_folders(config)
    available = available_templates(folders)
    candidates = locale_candidates(None, config.shop.default_locale)
    for name, sequence in config.sequences.items():
        for number, step in enumerate(sequence.steps):
            key = f"sequences.{name}.steps[{number}].template"
            for parts, why in step_parts(config, name, number):
                problem = _missing_part(available, folders, candidates, step.template, parts,
                                        list(step.variants) or [None])
                if problem is not None:
                    raise config.refusal(key, f"{problem}{why}")


def _missing_part(available: frozenset[str], folders: Sequence[Path], candidates: list[str], template: str,
                  parts: tuple[str, ...], arms: list[str | None]) -> str | None:
    """Why ``template`` cannot render ``parts`` (the first names the locale, as
    :meth:`Renderer.resolve_locale` finds it) for every arm, or None."""
    locale = next((c for c in candidates if part_name(c, template, parts[0]) in available), None)
    if locale is None:
        ending = "." + parts[0]
        known = sorted({file.split("/", 1)[1].removesuffix(ending) for file in available if file.endswith(ending)
                        and file.split("/", 1)[0] in candidates and "@" not in file})
        where = " nor ".join(str(folders[0] / candidate) for candidate in candidates)
        also = " (nor in the templates shipped with cartrescue)" if len(folders) > 1 else ""
        return (f"no template {template} in {where}{also}: "
                f"no {template}{ending} (the templates there: {', '.join(known) or 'none'}); every customer's "
                "locale falls back there, so a run would fail each cart of this step")
    for arm in arms:
        for part in parts[1:]:
            if part_file(available, template, locale, part, arm) not in available:
                own = f"{template}@{arm}.{part} nor " if arm else ""
                return (f"template {template} in {folders[0] / locale} has no {own}{template}.{part} (its "
                        f"{template}.{parts[0]} is there, and an e-mail renders all of {', '.join(PARTS)}); a run "
                        "would fail each cart of this step")
    return None
