"""`preview CART_ID`: one cart's message, rendered as a run would, sent nowhere."""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cartrescue import private
from cartrescue.commands.common import (
    ConfigOption,
    JsonOption,
    NowOption,
    err_console,
    error_line,
    fail,
    json_out,
    load,
    no_stdout,
    out_console,
    output_file,
    parse_now,
)
from cartrescue.errors import CartrescueError, ConfigError


def preview(
    cart_id: Annotated[str, typer.Argument(help="The cart's id as the source has it.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    step: Annotated[Optional[int], typer.Option("--step", min=1, metavar="N", help=(
        "Render this step, even of a cart a run would not message (default: the one due or waited for, else the "
        "next; none for a cart a run skips)."))] = None,
    locale: Annotated[Optional[str], typer.Option("--locale", metavar="LOCALE", help=(
        "Render in this locale instead of the customer's (one without the step's files falls back as a customer's "
        "would, and says so: locale_fallback in --json)."))] = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="FILE", help="Also write the HTML part to this file.")] = None,
    variant: Annotated[Optional[str], typer.Option(
        "--variant", metavar="NAME", help=(
            "Render this A/B variant of the step (default: the one the address is assigned; one without files of its "
            "own in the locale shown renders the base template, as a run does, and says so: variant_fallback in "
            "--json)."))] = None,
    screenshot: Annotated[Optional[Path], typer.Option(
        "--screenshot", metavar="FILE", help="Also render the HTML part in headless Chromium to this PNG file.")] = None,
    window_size: Annotated[str, typer.Option(
        "--window-size", metavar="WxH", help="Screenshot size in pixels, WIDTHxHEIGHT.")] = "800x1200",
) -> None:
    """Render one cart's message (subject, text, and optionally HTML) without sending it.

    Nothing is claimed, sent or allocated: a per-recipient incentive code shows as a placeholder.
    A cart a run would not message (suppressed, ordered, its sequence done, held out) shows why
    and no message; `--step N` shows step N anyway, under a note that a run would not send it.
    Its links are test links: its unsubscribe link unsubscribes nobody.
    `--screenshot` needs Debian's `chromium` package (`apt-get install -y chromium`).

    Exit codes: 0 shown (a cart a run would skip too: its reason is the preview), 1 the message
    cannot be rendered (the template's file and line, and the close names of a typo), 2 usage or
    config error (a cart the source does not have, or has but not as an abandoned cart: ordered, inactive,
    empty, and says which; a step's template missing), 3 the source
    cannot be read.

    Examples:

        cartrescue preview 1042 --step 3 --html /tmp/step3.html

        cartrescue preview 1042 --step 3 --locale sv --variant b --screenshot /tmp/step3-sv-b.png
    """

    try:
        no_stdout("--html", html, "stdout shows the preview: give a file (--json carries the HTML part as \"html\")")
        no_stdout("--screenshot", screenshot, "the picture goes to a PNG file: give one (--screenshot step1.png)")
        from cartrescue.compose.render import require_step_templates
        from cartrescue.job import resolve_now
        from cartrescue.preview import preview as make_preview

        size = None
        if screenshot is not None:
            from cartrescue.screenshot import parse_size

            size = parse_size(window_size)
        cfg = load(config, decides=True)
        require_step_templates(cfg)  # as a run refuses it: not a preview of one step that works
        shown = make_preview(cfg, cart_id, resolve_now(cfg, parse_now(now)), step=step, locale=locale, variant=variant)
        message = shown.message
        if message is None and shown.shown and (html is not None or screenshot is not None):
            way = "a row of the call list (call-list)" if shown.row is not None else "a text message (sms)"
            raise ConfigError(f"step {shown.step} goes out to this cart as {way}: it has no HTML "
                              "for --html or --screenshot")
        if screenshot is not None and size is not None and message is not None:
            from cartrescue.screenshot import screenshot as take_screenshot

            take_screenshot(message.html, screenshot, size=size)
    except CartrescueError as error:
        fail(error, as_json)
    if not as_json:
        for warning in shown.warnings:  # the export's, as a run says them: why every cart may look alike
            err_console().print(error_line(warning, "warning", "yellow"), soft_wrap=True)
        for fallback in (_locale_fallback(shown, locale), shown.variant_fallback):
            if fallback is not None:
                err_console().print(error_line(fallback, "note", "yellow"), soft_wrap=True)
    if shown.withheld:
        _show_withheld(shown, cart_id, as_json, html is not None or screenshot is not None, cfg, locale)
        return
    if shown.row is not None:
        _show_call(shown, cart_id, as_json, cfg, locale)
        return
    if message is None:
        _show_sms(shown, cart_id, as_json, cfg, locale)
        return
    if html is not None:
        try:
            with output_file("--html", html):
                with open(html, "w", encoding="utf-8", opener=private.opener) as page:  # a customer's message
                    page.write(message.html)
        except CartrescueError as error:
            fail(error, as_json)
    if as_json:
        json_out({**_verdict(shown, cart_id, locale), "subject": message.subject, "text": message.text,
                  "html": message.html, "to": message.to.email, "locale": shown.locale,
                  "screenshot": str(screenshot) if screenshot is not None else None, "row": None}, config=cfg, decides=True)
        return
    from rich.text import Text

    from cartrescue.text import printable

    console = out_console()
    _print_heading(console, shown, cart_id)
    console.print(Text.assemble(("To: ", "bold"), printable(message.to.email), "\n", ("Subject: ", "bold"),
                                printable(message.subject), "\n"), soft_wrap=True)
    console.print(Text(printable(message.text, keep_newlines=True)), soft_wrap=True)  # as sent: never re-wrapped
    if html is not None:
        _print_rule(console, f"HTML written to {html}")
    if screenshot is not None:
        _print_rule(console, f"screenshot written to {screenshot} ({window_size})")


def _show_sms(shown: Any, cart_id: str, as_json: bool, cfg: Any, locale: str | None) -> None:
    """An SMS step: the text as a run would send it, with its length in segments."""

    sms, target = shown.sms, shown.target
    if as_json:
        json_out({**_verdict(shown, cart_id, locale), "to": target.phone, "text": sms.text,
                  "encoding": sms.length.encoding,
                  "segments": sms.length.segments, "units": sms.length.units, "locale": sms.locale,
                  "subject": None, "html": None, "screenshot": None, "row": None}, config=cfg, decides=True)
        return
    from rich.text import Text

    from cartrescue.text import printable

    console = out_console()
    _print_heading(console, shown, cart_id)
    console.print(Text.assemble(("To: ", "bold"), printable(target.phone or ""), "\n", ("Length: ", "bold"),
                                f"{sms.length.describe()}, {len(sms.text)} characters",
                                "\n"), soft_wrap=True)
    console.print(Text(printable(sms.text, keep_newlines=True)), soft_wrap=True)  # as sent: never re-wrapped


def _show_call(shown: Any, cart_id: str, as_json: bool, cfg: Any, locale: str | None) -> None:
    """A call-list step: no message goes out, a row is appended to the list staff phone from;
    that row, column by column, as a run would write it."""
    if as_json:
        json_out({**_verdict(shown, cart_id, locale), "to": shown.target.phone, "list": shown.list_path,
                  "row": dict(shown.row), "subject": None, "text": None, "html": None, "locale": None,
                  "screenshot": None}, config=cfg, decides=True)
        return
    from rich.text import Text

    from cartrescue.text import printable

    console = out_console()
    _print_heading(console, shown, cart_id)
    console.print(Text.assemble(("Call list: ", "bold"), "no message is sent; a run appends this row for staff to "
                                "phone to ", printable(shown.list_path), "\n"), soft_wrap=True)
    width = max((len(name) for name, _cell in shown.row), default=0)
    for name, cell in shown.row:
        console.print(Text.assemble((printable(name).ljust(width), "bold"), "  ", printable(cell)), soft_wrap=True)


def _locale_fallback(shown: Any, asked: str | None) -> str | None:
    """On stderr on a terminal, ``locale_fallback`` in ``--json``: a script checking each
    market's message reads the document, not stderr."""
    from cartrescue.preview import locale_fallback

    return locale_fallback(asked, shown.locale, shown.step)


def _verdict(shown: Any, cart_id: str, asked: str | None) -> dict[str, Any]:
    """The keys every ``--json`` preview starts with: the cart, the step shown, what a run would
    do with the cart and why in words (``detail``), whether a message is shown, and the note
    that a run would not send it (``null`` when it would, now or later), the note that
    ``--locale`` fell back (``locale_fallback``), the note that the variant has no files in the
    locale shown (``variant_fallback``: its customers there read the base template), and what is
    wrong with the whole export (``warnings``: a misnamed column, as a run reports it)."""
    decision = shown.decision
    return {"cart_id": cart_id, "step": shown.step or None, "variant": shown.variant, "channel": shown.channel,
            "decision": decision.action.value, "reason": decision.reason.value, "detail": shown.why,
            "shown": shown.shown, "note": shown.note, "locale_fallback": _locale_fallback(shown, asked),
            "variant_fallback": shown.variant_fallback, "warnings": list(shown.warnings)}


def _show_withheld(shown: Any, cart_id: str, as_json: bool, files: bool, cfg: Any, locale: str | None) -> None:
    """A cart a run never messages, no step asked for: what a run would do and why, no message."""
    if as_json:
        json_out({**_verdict(shown, cart_id, locale), "subject": None, "text": None, "html": None, "to": None,
                  "locale": None, "screenshot": None, "row": None}, config=cfg, decides=True)
        return
    from rich.text import Text

    from cartrescue.text import printable

    decision = shown.decision
    console = out_console()
    _print_rule(console, _heading(shown, cart_id))
    console.print(Text.assemble(("A run would not message this cart: ", "bold"),
                                printable(f"{decision.action.value} ({shown.why})"), "\n",
                                "No message is shown; --step N shows step N as it would read."))
    if files:
        err_console().print(error_line("--html/--screenshot: nothing written (no message is shown; add --step N)",
                                       "note", "yellow"), soft_wrap=True)


def _print_heading(console: Any, shown: Any, cart_id: str) -> None:
    """The rule above a preview, then the banner when a run would not send what it shows."""
    from rich.text import Text

    from cartrescue.text import printable

    _print_rule(console, _heading(shown, cart_id))
    if shown.note:
        console.print(Text(printable(f"NOT SENT: {shown.note}"), style="bold yellow"))


def _print_rule(console: Any, title: str) -> None:
    """A rule with ``title`` in it where it fits; else a bare rule and the title whole on its own
    line: a rule's title is cut to the width, and a narrow terminal lost the file an ``--html``
    went to (``HTML written to /srv/shop/prev…``) and what a run would do with the cart."""
    from rich.cells import cell_len
    from rich.rule import Rule
    from rich.text import Text

    from cartrescue.text import printable

    title = printable(title)
    if cell_len(title) + 6 <= console.width:  # "─ " and " ─" each side, as rich draws it
        console.print(Rule(Text(title)))
        return
    console.print(Rule())
    console.print(Text(title), soft_wrap=True)


def _heading(shown: Any, cart_id: str) -> str:
    """The title of the rule above a preview: cart, step, variant, tier, the channel when it is
    not e-mail, and what a run now would do when that is not sending it."""
    decision = shown.decision
    note = "" if decision.reason.value == "due" else f" (a run now would {decision.action.value}: {decision.reason.value})"
    step = f" · step {shown.step}" if shown.step else ""
    arm = f" · variant {shown.variant}" if shown.variant else ""
    channel = f" · {shown.channel}" if shown.channel != "email" else ""
    return f"cart {cart_id}{step}{arm} · {decision.tier}{channel}{note}"
