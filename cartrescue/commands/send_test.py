"""`send-test ADDRESS [CART_ID]`: one rendered reminder to your own inbox, recorded as a test."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from cartrescue.commands.common import (
    MESSAGE_FOLDER,
    ConfigOption,
    JsonOption,
    NowOption,
    err_console,
    fail,
    json_out,
    load,
    made_folders,
    no_stdout,
    output_folder,
    parse_now,
)
from cartrescue.errors import CartrescueError, ExitCode


def send_test(
    address: Annotated[str, typer.Argument(help="Your own address: where the test goes.", show_default=False)],
    cart_id: Annotated[Optional[str], typer.Argument(
        help="Render this cart of the source (default: the first cart a run would message now, else the first "
             "with items, else a built-in sample).", show_default=False)] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    step: Annotated[Optional[int], typer.Option("--step", min=1, metavar="N", help="Send this step (default: the one due or waited for, else 1).")] = None,
    locale: Annotated[Optional[str], typer.Option("--locale", metavar="LOCALE", help=(
        "Render in this locale instead of the customer's (one without the step's files falls back as a customer's "
        "would, and says so: locale_fallback in --json)."))] = None,
    variant: Annotated[Optional[str], typer.Option("--variant", metavar="NAME", help=(
        "Render this A/B variant of the step (one without files of its own in the locale shown renders the base "
        "template, as a run does, and says so: variant_fallback in --json)."))] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Render the built-in sample cart, not one of the shop's.")] = False,
    outbox: Annotated[Optional[Path], typer.Option(
        "--outbox", metavar="DIR", help="Write the test as an .eml file into DIR instead of sending it over SMTP "
                                               "(relative: beside the config file).")] = None,
) -> None:
    """Send one reminder, rendered exactly as a run would render it, to your own address.

    It goes through the configured SMTP relay (or, with `--outbox DIR`, into an .eml file), with
    `[test]` before the subject, and is recorded in the ledger as a test (`cr_send_test`), never
    as the cart's step: the customer still gets their reminder, and no incentive code is handed
    out (a per-recipient code shows its placeholder). Its unsubscribe and survey links are test
    links: they open the same pages, and unsubscribe or record nobody.

    Exit codes: 0 sent, 1 the relay refused it or it cannot be rendered (the template's file and
    line), 2 usage or config error (a cart the source does not have, a relay setting it cannot
    send with), 3 the source cannot be read.

    Examples:

        cartrescue send-test me@shop.example.com

        cartrescue send-test me@shop.example.com 1042 --step 3 --locale sv --variant b
    """
    if sample and cart_id is not None:
        from cartrescue.errors import ConfigError

        fail(ConfigError("send-test: give a CART_ID or --sample, not both"), as_json)
    with made_folders() as made:  # a test that fails before writing there leaves no empty folder behind
        try:
            from cartrescue.compose.render import require_step_templates
            from cartrescue.job import resolve_now
            from cartrescue.send_test import send_test as deliver

            cfg = load(config, decides=True)
            require_step_templates(cfg)  # as a run and preview refuse it: no test of a sequence a run would refuse
            if outbox is not None:
                no_stdout("--outbox", outbox, MESSAGE_FOLDER)
                output_folder("--outbox", cfg.path(outbox), made)
            try:
                result = deliver(cfg, address, resolve_now(cfg, parse_now(now)), cart_id=cart_id, sample=sample,
                                 step=step, locale=locale, variant=variant, outbox=outbox)
            except CartrescueError as error:
                raise cfg.locate(error) from None
        except CartrescueError as error:
            fail(error, as_json)
    if as_json:
        json_out({"test_id": result.test_id, "to": result.to, "cart_id": result.cart_id or None,
                  "cart": result.origin, "step": result.step, "variant": result.variant, "subject": result.subject,
                  "transport": result.transport, "status": result.status, "reply": result.reply,
                  "message_id": result.message_id, "note": result.note, "locale": result.locale,
                  "locale_fallback": result.locale_fallback, "variant_fallback": result.variant_fallback},
                 config=cfg, decides=True)
    else:
        from rich.text import Text

        from cartrescue.text import printable

        which = {"cart": f"cart {result.cart_id}", "due": f"cart {result.cart_id} (due now)",
                 "source": f"cart {result.cart_id} (the first with items; none is due now)",
                 "sample": "the built-in sample cart"}[result.origin]
        arm = f", variant {result.variant}" if result.variant else ""
        line = (f"test #{result.test_id}: {which}, step {result.step}{arm} -> {result.to} via {result.transport}: "
                f"{result.status}" + (f" ({result.reply})" if result.reply else "") + f"\nsubject: {result.subject}")
        err_console().print(Text(printable(line, keep_newlines=True), style="" if result.sent else "bold red"),
                            soft_wrap=True)
        from cartrescue.commands.common import error_line

        # not the customer's message, or not the market's own, or not the arm's own
        for note in (result.note, result.locale_fallback, result.variant_fallback):
            if note:
                err_console().print(error_line(note, "note", "yellow"), soft_wrap=True)
    if not result.sent:
        raise typer.Exit(int(ExitCode.SOME_FAILED))
