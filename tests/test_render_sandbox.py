"""The renderer's sandbox: its fast paths (``dict.name``, a macro's call) answer exactly as Jinja's own sandbox."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from cartrescue.config import Config
from cartrescue.compose.render import Renderer, _sandbox_class, printed_none

class Trusted(str):
    """A str that says it is HTML already: escape asks it, never escapes it."""

    def __html__(self) -> str:
        return f"<em>{self}</em>"


CONTEXT: dict[str, Any] = {
    "shop": {"name": "Shop & Co", "items": "a key named like a dict method", "_private": "kept", "none": None},
    "items": [{"name": "Mug", "image_url": None}, {"name": "Cup", "image_url": "https://x/c.jpg"}],
    "plain": "text",
    "counter": Counter(a=1),  # a dict subclass: not the plain dict the compiled lookup takes inline
    "trusted": Trusted("<b>"),
    "amount": 12.5,
}

EXPRESSIONS = [
    "{{ shop.name }}",
    "{{ shop['name'] }}",
    "{{ shop.none is none }}",
    "{{ shop._private }}",
    "{{ shop.items is callable }}",  # dict's own method wins over the key, as in Jinja
    "{{ shop.get('name') }}",
    "{{ shop.keys()|list|length }}",
    "{{ items|selectattr('image_url', 'ne', none)|list|length }}",
    "{% for item in items %}{{ item.name }}/{% endfor %}",
    "{{ plain.upper() }}",
    "{{ shop.missing }}",  # undefined: StrictUndefined raises
    "{{ shop.__class__ }}",  # unsafe: the sandbox refuses
    "{{ shop.update.__self__ }}",
    "{{ plain.__class__.__mro__ }}",
    "{{ shop.name.__class__ }}",
    # dict.name is looked up inline in the compiled template (code_generator_class): the same answers.
    "{{ items[1].image_url }}{{ (shop.none or shop).name }}",
    "{% set d = {'a': {'b': 'c'}} %}{{ d.a.b }}{{ d.a.values()|list|length }}",
    "{{ counter.a }}{{ counter.b }}{{ counter.most_common(1) }}",
    "{{ shop.name.missing }}",
    # A plain str output is escaped inline (escape_str), any other value by escape: the same text.
    "{{ '<a href=\"x\">' ~ plain ~ \"'&\" }}{{ shop.none }}{{ amount }}{{ items }}{{ trusted }}{{ shop.name|safe }}",
    "{% set x %}<i>{{ shop.name }}</i>{% endset %}{{ x }}{% macro m() %}<{{ plain }}>{% endmacro %}{{ m() }}",
    "{% autoescape false %}{{ shop.name }}{% endautoescape %}{{ shop.name }}",
    # Macros are called straight away (FastDictSandbox.call): same output as through the stock checks.
    "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(shop.name) }}",
    "{% macro m(x) %}[{{ x }}]{% endmacro %}{% for item in items %}{{ m(item.name) }}{{ loop.index }}{% endfor %}",
    "{% macro box() %}({{ caller() }}){% endmacro %}{% call box() %}{{ plain }}{% endcall %}",
    "{% macro m(a, b='d') %}{{ a }}{{ b }}{{ varargs|length }}{{ kwargs|length }}{% endmacro %}{{ m(1, 2, 3) }}{{ m(a=4) }}",
    "{% set n = 3 %}{% macro m() %}{{ n }}{{ shop.__class__ }}{% endmacro %}{{ m() }}",
    "{% macro m() %}{{ missing }}{% endmacro %}{{ m() }}",
    "{% macro m() %}x{% endmacro %}{{ m.__globals__ }}",
    # The pieces of one output are yielded joined (code_generator_class's visit_Output): the same text,
    # the same error from a piece in the middle.
    "{% for item in items %}<{{ item.name }}|{{ loop.index }}>{% endfor %}!{{ plain }}?{{ trusted }}",
    "{% if plain %}x{{ plain }}y{{ amount }}{% else %}z{% endif %}{{ shop.none }}-{{ items[0] }}",
    "a{{ plain }}b{{ shop.missing }}c",
    "{% block b %}<{{ plain }}>{{ shop.name }}{% endblock %}[{{ self.b() }}]",
]


def _outcome(env: Any, source: str) -> tuple[str, str]:
    try:
        return "ok", env.from_string(source).render(CONTEXT)
    except (SecurityError, UndefinedError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_the_fast_sandbox_answers_as_jinjas_sandbox(source: str) -> None:
    options = {"undefined": StrictUndefined, "autoescape": True}
    assert _outcome(_sandbox_class()(**options), source) == _outcome(SandboxedEnvironment(**options), source)


def test_the_pieces_of_one_output_are_yielded_as_one_string() -> None:
    # Each yield of a block passes through every generator above it (the layout's, the child's):
    # text and values between two tags come out as one piece, loops and tags still piece by piece.
    env = _sandbox_class()(undefined=StrictUndefined, autoescape=True)
    template = env.from_string("a{{ plain }}b{% for item in items %}<{{ item.name }}>{% endfor %}{{ amount }}")
    pieces = list(template.root_render_func(template.new_context(CONTEXT)))
    assert pieces == ["atextb", "<Mug>", "<Cup>", "12.5"]


def test_a_templates_globals_are_the_environments_under_its_own() -> None:
    """The renderer flattens Jinja's ChainMap of globals into one dict: same keys, same values."""
    from collections import ChainMap

    env = _sandbox_class()(undefined=StrictUndefined)
    env.globals["range"] = range
    own = {"range": "the template's own", "extra": 1}
    flat = env.make_globals(own)
    assert type(flat) is dict
    assert flat == dict(ChainMap(own, env.globals))
    source = "{{ extra }} {{ namespace is callable }} {{ lipsum is callable }} {{ cycler is callable }}"
    assert env.from_string(source, {"extra": 2}).render() == "2 True True True"


BUILDS_TOO_MUCH = [
    ('{{ ("x" * 50000)|replace("x", "x" * 50000)|length }}', "replace would make a value of more than"),
    ('{{ "a"|center(1000000000)|length }}', "center would make a value of more than"),
    ('{{ "a"|indent(1000000000, true) }}', "indent would make a value of more than"),
    ('{{ "%0999999999d"|format(1) }}', "a format with a width or precision above"),
    ('{{ "%.999999999f" % 1.5 }}', "a format with a width or precision above"),
    ('{{ "{:>999999999}".format(1) }}', "a format with a width or precision above"),
    ('{{ range(100000)|join("x" * 100000) }}', "join would make a value of more than"),
    # the items, not only the separator: four such joins, each of ten, made 900 million characters (1 GB)
    ('{% set a = "x" * 99999 %}{{ [a, a, a, a, a, a, a, a, a, a, a]|join|length }}', "join would make a value of more than"),
    ('{{ "a b"|wordwrap(1, wrapstring="x" * 100000) }}', None),  # small: two breaks
    ('{{ ("a " * 50000)|wordwrap(1, wrapstring="x" * 90000) }}', "wordwrap would make a value of more than"),
    ('{% set ns = namespace(s="x" * 100000) %}{% for i in range(25) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}',
     "a ~ join of more than"),
    ('{% set ns = namespace(s=["x"] * 100000) %}{% for i in range(25) %}{% set ns.s = ns.s + ns.s %}{% endfor %}',
     "a + join would make a value of more than"),
    # str methods, as the filters of the same name: the sandbox lets templates call them
    ('{{ "a".ljust(400000000)|length }}', "str.ljust would make a value of more than"),
    ('{{ "a".rjust(400000000)|length }}', "str.rjust would make a value of more than"),
    ('{{ "a".center(400000000)|length }}', "str.center would make a value of more than"),
    ('{{ "1".zfill(400000000)|length }}', "str.zfill would make a value of more than"),
    ('{{ ("\t" * 99999).expandtabs(99999)|length }}', "str.expandtabs would make a value of more than"),
    ('{{ ("x" * 99999).replace("x", "y" * 99999)|length }}', "str.replace would make a value of more than"),
    ('{{ ("x" * 20).replace("", "y" * 99999)|length }}', "str.replace would make a value of more than"),
    ('{{ ("y" * 99999).join(range(99999)|map("string"))|length }}', "str.join would make a value of more than"),
    ('{{ "%*d" % (50000000, 1) }}', "a format with a width or precision above"),
    ('{{ "%*d"|format(50000000, 1) }}', "a format with a width or precision above"),
    ('{{ "{:{w}}".format(1, w=50000000) }}', "a format with a width or precision above"),
]


@pytest.mark.parametrize(("source", "refusal"), BUILDS_TOO_MUCH)
def test_a_value_built_past_the_limit_on_the_way_fails_the_render_not_the_process(source: str,
                                                                                  refusal: str | None) -> None:
    """Only the rendered part was capped, once whole: these took gigabytes first."""
    import re

    from cartrescue.errors import TemplateError

    env = _sandbox_class()(undefined=StrictUndefined)
    if refusal is None:
        assert env.from_string(source).render()
        return
    with pytest.raises(TemplateError, match=re.escape(refusal)):
        env.from_string(source).render()


def test_the_bounded_filters_and_operators_give_jinjas_answers_within_the_limits() -> None:
    source = ('{{ "abc"|replace("b", "bb") }} {{ [1, 2]|join(",") }} {{ "%05d"|format(42) }} {{ "a" ~ "b" }} '
              '{{ "{:>5}".format(1) }} {{ 1 + 2 }} {{ "x" + "y" }} {{ 7 % 3 }} {{ "%.2f" % 1.5 }} {{ "ab"|center(6) }} '
              '{{ "a\nb"|indent(2, true) }} {{ "a b c"|wordwrap(3) }} {{ [{"n": 1}, {"n": 2}]|join("-", attribute="n") }} '
              '{{ "ab".ljust(4) }}|{{ "ab".rjust(4) }}|{{ "ab".center(6) }}|{{ "7".zfill(3) }}|{{ "a\tb".expandtabs(4) }} '
              '{{ "abc".replace("b", "bb") }} {{ "abcb".replace("b", "", 1) }} {{ "-".join(["a", "b"]) }} '
              '{{ ",".join(range(3)|map("string")) }}')
    options = {"undefined": StrictUndefined}
    assert _sandbox_class()(**options).from_string(source).render() == \
        SandboxedEnvironment(**options).from_string(source).render()


def test_what_one_part_of_a_message_sets_never_reaches_the_next_part(tmp_path: Path) -> None:
    """A message's parts share the variables they are rendered from (merged once a message): a
    part's own ``{% set %}``, even of a context name or a global, stays in that part, in the
    environment where None prints nothing too (a part that printed ``None`` is rendered there)."""
    folder = tmp_path / "templates" / "en"
    folder.mkdir(parents=True)
    sets = '{% set tier = "set" %}{% set range = none %}{% set extra = 1 %}'
    shows = "{{ tier }} {{ extra is defined }} {{ range(2)|list }} {{ customer.last_name }}"
    (folder / "note.subject.txt").write_text(sets + "{{ tier }} {{ extra }} {{ range }}", encoding="utf-8")
    (folder / "note.txt").write_text(shows + sets + "|{{ tier }} {{ extra }}", encoding="utf-8")
    (folder / "note.html").write_text(shows, encoding="utf-8")
    renderer = Renderer(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder.parent))
    context = {"tier": "vip", "customer": {"last_name": None}}
    rendered = renderer.render("note", "en", context)
    assert (rendered.subject, rendered.text, rendered.html) == ("set 1", "vip False [0, 1] |set 1", "vip False [0, 1] ")
    assert context == {"tier": "vip", "customer": {"last_name": None}}


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("NNoneE NoN\nNone\u041dЖő"), max_size=40))
@example("None")
@example("NNone")
@example("NoneN")
@example("Non")
@example("ÑNone")
@example("\u041dNone")
def test_a_part_printed_none_exactly_where_it_holds_the_word(text: str) -> None:
    """The check that sends a part to the environment where None prints nothing answers as
    ``"None" in text`` does, at every place of the word and after near misses (``NNone``,
    ``Non``), in one- and two-byte-a-character strings."""
    assert printed_none(text) == ("None" in text)
