"""`preview CART_ID`: one cart's message, rendered as a run would, sent nowhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cartrescue.commands.common import (
    ConfigOption,
    JsonOption,
    NowOption,
    err_console,
    error_line,
    fail,
    json_out,
    load,
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
    step: Annotated[Optional[int], typer.Option("--step", min=1, metavar="N", help="Render this step (default: the one due or waited for, else 1).")] = None,
    locale: Annotated[Optional[str], typer.Option("--locale", metavar="LOCALE", help="Render in this locale instead of the customer's.")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="FILE", help="Also write the HTML part to this file.")] = None,
    variant: Annotated[Optional[str], typer.Option(
        "--variant", metavar="NAME", help="Render this A/B variant of the step (default: the one the address is assigned).")] = None,
    screenshot: Annotated[Optional[Path], typer.Option(
        "--screenshot", metavar="FILE", help="Also render the HTML part in headless Chromium to this PNG file.")] = None,
    window_size: Annotated[str, typer.Option(
        "--window-size", metavar="WxH", help="Screenshot size in pixels, WIDTHxHEIGHT.")] = "800x1200",
) -> None:
    """Render one cart's message (subject, text, and optionally HTML) without sending it.

    Nothing is claimed, sent or allocated: a per-recipient incentive code shows as a placeholder.
    `--screenshot` needs Debian's `chromium` package (`apt-get install -y chromium`).

    Examples:

        cartrescue preview 1042 --step 3 --html /tmp/step3.html

        cartrescue preview 1042 --step 3 --locale sv --variant b --screenshot /tmp/step3-sv-b.png
    """

    try:
        from cartrescue.job import resolve_now
        from cartrescue.preview import preview as make_preview
        from cartrescue.render import require_step_templates

        size = None
        if screenshot is not None:
            from cartrescue.screenshot import parse_size

            size = parse_size(window_size)
        cfg = load(config)
        require_step_templates(cfg)  # as a run refuses it: not a preview of one step that works
        shown = make_preview(cfg, cart_id, resolve_now(cfg, parse_now(now)), step=step, locale=locale, variant=variant)
        message = shown.message
        if message is None and (html is not None or screenshot is not None):
            raise ConfigError(f"step {shown.step} goes out to this cart as a text message (sms): it has no HTML "
                              "for --html or --screenshot")
        if screenshot is not None and size is not None and message is not None:
            from cartrescue.screenshot import screenshot as take_screenshot

            take_screenshot(message.html, screenshot, size=size)
    except CartrescueError as error:
        fail(error, as_json)
    decision, number, variant = shown.decision, shown.step, shown.variant
    from cartrescue.preview import fell_back

    if fell_back(locale, shown.locale) and not as_json:
        err_console().print(error_line(f"--locale {locale}: step {number}'s template has no {locale} files: shown in "
                                       f"{shown.locale} (the fallback a customer of {locale} gets)", "note", "yellow"),
                            soft_wrap=True)
    if message is None:
        _show_sms(shown, cart_id, as_json)
        return
    if html is not None:
        try:
            with output_file("--html", html):
                html.write_text(message.html, encoding="utf-8")
        except CartrescueError as error:
            fail(error, as_json)
    if as_json:
        json_out({"cart_id": cart_id, "step": number, "variant": variant, "channel": shown.channel,
                  "decision": decision.action.value,
                  "reason": decision.reason.value, "subject": message.subject, "text": message.text,
                  "html": message.html, "to": message.to.email, "locale": shown.locale,
                  "screenshot": str(screenshot) if screenshot is not None else None})
        return
    from rich.rule import Rule
    from rich.text import Text

    from cartrescue.text import printable

    console = out_console()
    console.print(_heading(shown, cart_id))
    console.print(Text.assemble(("To: ", "bold"), printable(message.to.email), "\n", ("Subject: ", "bold"),
                                printable(message.subject), "\n"))
    console.print(printable(message.text, keep_newlines=True))
    if html is not None:
        console.print(Rule(f"HTML written to {html}"))
    if screenshot is not None:
        console.print(Rule(f"screenshot written to {screenshot} ({window_size})"))


def _show_sms(shown: Any, cart_id: str, as_json: bool) -> None:
    """An SMS step: the text as a run would send it, with its length in segments."""

    sms, decision, target = shown.sms, shown.decision, shown.target
    if as_json:
        json_out({"cart_id": cart_id, "step": shown.step, "variant": shown.variant, "channel": "sms",
                  "decision": decision.action.value, "reason": decision.reason.value,
                  "to": target.phone, "text": sms.text, "encoding": sms.length.encoding,
                  "segments": sms.length.segments, "units": sms.length.units, "locale": sms.locale})
        return
    from rich.text import Text

    from cartrescue.text import printable

    console = out_console()
    console.print(_heading(shown, cart_id))
    console.print(Text.assemble(("To: ", "bold"), printable(target.phone or ""), "\n", ("Length: ", "bold"),
                                f"{sms.length.describe()}, {len(sms.text)} characters",
                                "\n"))
    console.print(printable(sms.text, keep_newlines=True))


def _heading(shown: Any, cart_id: str) -> Any:
    """The rule above a preview: cart, step, variant, tier, the channel when it is not e-mail,
    and what a run now would do when that is not sending it."""
    from rich.rule import Rule
    from rich.text import Text

    from cartrescue.text import printable

    decision = shown.decision
    note = "" if decision.reason.value == "due" else f" (a run now would {decision.action.value}: {decision.reason.value})"
    arm = f" · variant {shown.variant}" if shown.variant else ""
    channel = f" · {shown.channel}" if shown.channel != "email" else ""
    return Rule(Text(printable(f"cart {cart_id} · step {shown.step}{arm} · {decision.tier}{channel}{note}")))
