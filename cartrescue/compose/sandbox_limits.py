"""Size limits on what a template builds between its start and its output.

The rendered part is capped (``render.MAX_PART_CHARS``), but only once it is whole: a template
that builds one huge value on the way -- ``"a"|center(10**9)``, ``s|replace("x", "x" * 50000)``,
``"%0999999999d"|format(1)``, a string that doubles itself in a loop with ``~`` -- took gigabytes
first and the run with it. Here each such step is checked before (or, for a join of two values,
as) it is made: the one message fails with a TemplateError, as a ``*`` product too large does.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from cartrescue.errors import TemplateError

#: Characters one rendered part, and so any value built for it, may hold.
MAX_PART_CHARS = 1_000_000
#: Items of one ``*`` product (``"x" * n``, ``list * n``).
MAX_PRODUCT = 100_000

#: The numbers of a ``%`` conversion: flags, then width and precision (``*``: taken from the
#: values, which a template may make as large as it likes: refused).
_PERCENT = re.compile(r"%[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?")
_NUMBER = re.compile(r"\d+")
#: str methods whose first argument is the width of the result.
_WIDTHS = frozenset({"ljust", "rjust", "center", "zfill"})


def _too_big(size: int, what: str) -> None:
    if size > MAX_PART_CHARS:
        raise TemplateError(f"{what} would make a value of more than {MAX_PART_CHARS} characters")


def check_format(text: Any) -> None:
    """Refuse a ``%`` or ``{}`` format whose width or precision alone is past the limit."""
    if isinstance(text, str) and not _fits(text):
        raise TemplateError(f"a format with a width or precision above {MAX_PART_CHARS}")


@lru_cache(maxsize=512)
def _fits(text: str) -> bool:
    """Whether no width or precision of the format ``text`` is past the limit (a template's
    formats are few and used for every line of every message: each is parsed once)."""
    numbers = [number for match in _PERCENT.finditer(text) for number in match.groups() if number]
    try:
        specs = [spec for _literal, _field, spec, _conversion in string.Formatter().parse(text) if spec]
    except ValueError:
        specs = []  # not a {} format: the formatting itself says so
    if "*" in numbers or any("{" in spec for spec in specs):  # a width from the values: "%*d", "{:{w}}"
        return False
    numbers += [number for spec in specs for number in _NUMBER.findall(spec)]
    return not any(len(number) > 7 or int(number) > MAX_PART_CHARS for number in numbers)


def str_call_args(text: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The arguments of sandboxed code's call of ``text.method``, refused where the result would
    be past the limit: checked before it is made, as the filters of the same name are
    (``shop.name.ljust(400000000)`` took 450 MB where ``|center`` was refused). A ``join`` of
    an iterator gets it as a list, measured first."""
    if method in _WIDTHS:
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int):
            _too_big(width, f"str.{method}")
    elif method == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            _too_big(len(text) + text.count("\t") * max(size, 0), "str.expandtabs")
    elif method == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        hits = text.count(old) if old else len(text) + 1
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        _too_big(len(text) + hits * (len(new) - len(old)), "str.replace")
    elif method == "join" and args:
        items = list(args[0])
        _too_big(sum(len(item) for item in items if isinstance(item, str)) + len(text) * max(len(items) - 1, 0),
                 "str.join")
        return (items, *args[1:])
    return args


def bounded(value: Any) -> Any:
    """The result of a ``~`` join, refused when past the limit (a value that doubles in a loop
    stops at twice the limit, never at gigabytes)."""
    if isinstance(value, str) and len(value) > MAX_PART_CHARS:
        raise TemplateError(f"a ~ join of more than {MAX_PART_CHARS} characters (a runaway loop?)")
    return value


def binop(operator: str, left: Any, right: Any) -> Any:
    """``*``, ``**``, ``+`` and ``%`` of sandboxed code, each refused when its result would be
    past a limit."""
    if operator == "**":
        if isinstance(right, (int, float)) and abs(right) > 100:
            raise TemplateError(f"{left!r} ** {right!r}: exponent too large")
        return left ** right
    if operator == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            _too_big(len(left) + len(right), "a + join")
        return left + right
    if operator == "%":
        check_format(left)
        return left % right
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, (str, list, tuple, bytes)) and isinstance(times, int):
            if len(sequence) * max(times, 0) > MAX_PRODUCT:
                raise TemplateError(f"a * product of more than {MAX_PRODUCT} items")
    return left * right


def bounded_filters(filters: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Jinja's filters that can make a value many times their input's size, each checking the
    size it would make first (same signatures and marks as Jinja's own)."""
    from jinja2 import pass_environment, pass_eval_context

    replace, center, indent, format_, join, wordwrap = (
        filters["replace"], filters["center"], filters["indent"], filters["format"], filters["join"],
        filters["wordwrap"])

    @pass_eval_context
    def do_replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> Any:
        text, old_text, new_text = str(s), str(old), str(new)
        times = (len(text) + 1 if not old_text else text.count(old_text)) if count is None else max(count, 0)
        _too_big(len(text) + times * (len(new_text) - len(old_text)), "replace")
        return replace(eval_ctx, s, old, new, count)

    def do_center(value: Any, width: int = 80) -> Any:
        _too_big(int(width), "center")
        return center(value, width)

    def do_indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> Any:
        size = len(width) if isinstance(width, str) else int(width)
        _too_big(len(str(s)) + size * (str(s).count("\n") + 1), "indent")
        return indent(s, width, first, blank)

    def do_format(value: Any, *args: Any, **kwargs: Any) -> Any:
        check_format(value)
        return format_(value, *args, **kwargs)

    @pass_eval_context
    def do_join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        # Its items too (their strings; an attribute's, once joined): measuring the separator
        # alone let ten 99,999-character items join, and ten of those (900 million, 1 GB).
        _too_big(sum(len(item) for item in items if isinstance(item, str)) + len(str(d)) * max(len(items) - 1, 0),
                 "join")
        joined = join(eval_ctx, items, d, attribute)
        _too_big(len(joined), "join")
        return joined

    @pass_environment
    def do_wordwrap(environment: Any, s: Any, width: int = 79, break_long_words: bool = True,
                    wrapstring: str | None = None, break_on_hyphens: bool = True) -> Any:
        breaks = len(str(s)) // max(int(width), 1) + 1
        _too_big(len(str(s)) + breaks * len(wrapstring or "\n"), "wordwrap")
        return wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)

    return {"replace": do_replace, "center": do_center, "indent": do_indent, "format": do_format,
            "join": do_join, "wordwrap": do_wordwrap}


#: What ``{{ x.name }}`` finds as an attribute of a dict (``x.items``, ``x.get``): the sandbox's
#: checks decide those; any other name of a plain dict is its key.
DICT_ATTRIBUTES = frozenset(dir(dict))


def code_generator_class() -> type[Any]:
    """Jinja's code generator, with every ``~`` join passed through :func:`bounded`
    (``environment.bounded`` in the compiled template), the template's ``escape`` (every
    output of an HTML part) bound to ``environment.fast_escape``, a plain ``str`` output
    escaped inline, and a lookup such as ``shop.name`` made inline where the value is a plain
    dict (below). Its name is part of the compiled-template cache's key
    (:mod:`cartrescue.template_cache`): renamed when what it writes changes."""
    from jinja2 import nodes
    from jinja2.compiler import CodeGenerator, optimizeconst

    class JoinedOutputCodeGenerator(CodeGenerator):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._escaped: list[str | None] = []  # an output's value, between _output_child_pre and _post

        def _output_child_pre(self, node: Any, frame: Any, finalize: Any) -> None:
            """``{{ value }}`` of an HTML part as ``escape_str(value)`` where the value is a plain
            ``str`` (nearly every output: names, amounts, links), else ``escape(value)`` as
            Jinja writes it. The same text, without a Python call and a Markup copy of it for
            each output: the pieces are only joined (a macro's too, which its caller marks safe)."""
            if frame.eval_ctx.volatile or not frame.eval_ctx.autoescape or finalize.src is not None:
                self._escaped.append(None)
                super()._output_child_pre(node, frame, finalize)
                return
            value = self.temporary_identifier()
            self._escaped.append(value)
            self.write(f"(escape_str({value}) if type({value} := ")

        def _output_child_post(self, node: Any, frame: Any, finalize: Any) -> None:
            value = self._escaped.pop()
            if value is None:
                super()._output_child_post(node, frame, finalize)
            else:
                self.write(f") is str else escape({value}))")

        def visit_Output(self, node: Any, frame: Any) -> None:
            """The pieces of one output node of a template's body or block (text and values
            between two tags) yielded as one string, ``yield concat((piece, ...))``, where Jinja
            yields each: a piece of a block passes through every generator above it (the block,
            the layout's ``root``, the child's ``root``), so a yield costs a resumption of each.
            The same text, its lines as Jinja marks them. Buffered frames (macros, loops of their
            own) already join; Jinja writes the rest."""
            if frame.buffer is not None or frame.require_output_check or self.environment.is_async:
                super().visit_Output(node, frame)
                return
            finalize = self._make_finalize()
            body: list[Any] = []  # as Jinja's: runs of constant text (lists), and the nodes to evaluate
            for child in node.nodes:
                try:
                    if not (finalize.const or isinstance(child, nodes.TemplateData)):
                        raise nodes.Impossible()
                    const = self._output_child_to_const(child, frame, finalize)
                except (nodes.Impossible, Exception):
                    body.append(child)
                    continue
                if body and isinstance(body[-1], list):
                    body[-1].append(const)
                else:
                    body.append([const])
            if len(body) < 2:
                super().visit_Output(node, frame)
                return
            self.writeline("yield concat((")
            self.indent()
            for item in body:
                if isinstance(item, list):
                    self.writeline(self._output_const_repr(item) + ",")
                else:
                    self.newline(item)
                    self._output_child_pre(item, frame, finalize)
                    self.visit(item, frame)
                    self._output_child_post(item, frame, finalize)
                    self.write(",")
            self.outdent()
            self.writeline("))")

        def visit_Concat(self, node: Any, frame: Any) -> None:
            self.write("environment.bounded(")
            super().visit_Concat(node, frame)
            self.write(")")

        @optimizeconst
        def visit_Getattr(self, node: Any, frame: Any) -> None:
            """``x.name`` as ``x['name']`` where ``x`` is a plain dict that has that key, else
            ``environment.getattr(x, 'name')`` as Jinja writes it: the shortcut the sandbox's
            ``getattr`` takes for such a dict (render.py), without a call per lookup (~70 a
            message). A name that is one of dict's own attributes always goes to the sandbox."""
            if self.environment.is_async or node.attr in DICT_ATTRIBUTES:
                super().visit_Getattr(node, frame)
                return
            value = self.temporary_identifier()
            self.write(f"({value}[{node.attr!r}] if type({value} := ")
            self.visit(node.node, frame)
            self.write(f") is dict and {node.attr!r} in {value} else environment.getattr({value}, {node.attr!r}))")

        def writeline(self, x: str, node: Any = None, extra: int = 0) -> None:
            super().writeline(x, node, extra)
            if x.startswith("from jinja2.runtime import "):  # the module's first line: escape imported
                super().writeline("escape = environment.fast_escape")
                super().writeline("escape_str = environment.escape_str")

    return JoinedOutputCodeGenerator


def fast_escape() -> Callable[[Any], Any]:
    """``markupsafe.escape``, without its Python ``Markup.__new__`` for a plain ``str`` (which
    would only ask it for ``__html__`` and make the same Markup) and without copying a value
    that is a Markup already (a macro's output): the same text. The compiled templates call it
    for an output that is not a plain ``str`` (which :func:`escape_str` escapes inline), and for
    every output where None prints nothing (``finalize``). Stock ``escape`` where this MarkupSafe
    has no ``_escape_inner`` (before 3.0)."""
    import markupsafe

    escape, markup = markupsafe.escape, markupsafe.Markup
    inner = getattr(markupsafe, "_escape_inner", None)
    if inner is None:
        return escape
    new = str.__new__

    def escaped(value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return new(markup, inner(value))
        if kind is markup:
            return value
        return escape(value)

    return escaped


def escape_str() -> Callable[[str], str]:
    """The escaped text of a plain ``str``, as a plain ``str`` (an HTML part's outputs are only
    joined): MarkupSafe's own C escape, ``_escape_inner``; ``str(escape(text))`` before 3.0."""
    import markupsafe

    inner = getattr(markupsafe, "_escape_inner", None)
    if inner is not None:
        return inner  # type: ignore[no-any-return]
    escape = markupsafe.escape

    def escaped(text: str) -> str:
        return str(escape(text))

    return escaped
