"""`unsubscribe` and `suppress import|list|remove`: opt-outs and suppressions."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from cartrescue.commands.common import (
    ConfigOption,
    JsonOption,
    err_console,
    error_line,
    fail,
    json_out,
    load,
    out_console,
    reading_ledger,
    recording_ledger,
    sub_typer,
)
from cartrescue.errors import CartrescueError, ConfigError, ExitCode
from cartrescue.text import clipped


def unsubscribe(
    target: Annotated[str, typer.Argument(
        help="A token, the unsubscribe URL or mailto: link from a message, the subject of an unsubscribe mail "
             "('unsubscribe TOKEN', also replied to or forwarded), an address, or a phone number.",
        show_default=False, metavar="TOKEN|EMAIL|PHONE")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop every reminder to one address (or phone number): every cart, every step, from now on.

    Give the token (or the whole link, or the subject of an unsubscribe mail) and the address in
    it is suppressed after its signature is checked; a forged or altered token is refused (exit
    2). An address given as it is needs no token. A phone number (`+46…`, or as the shop's
    country writes it) is suppressed as a STOP reply is: no text, call or e-mail to a cart with
    it. For a whole mailbox of unsubscribe mails, see `suppress mailbox`.

    Example (TOKEN: the one in the customer's link, signed by your shop's secret):

        cartrescue unsubscribe 'https://shop.example.com/unsubscribe?token=TOKEN'
        cartrescue unsubscribe bob@example.com --json
        cartrescue unsubscribe +46701234567
    """
    from cartrescue.contacts import email_hash, phone_hash
    from cartrescue.suppressions import UNSUBSCRIBED, BadToken, as_number, resolve, token_spots, unsubscribe_number
    from cartrescue.suppressions import unsubscribe as do_unsubscribe

    email: str | None = None
    try:
        cfg = load(config)
        spots = token_spots(cfg.shop.unsubscribe_url)
        try:  # before the ledger is opened: a refused token, address or number makes no ledger file
            number = as_number(target, cfg.phone_region)
            if number is None:
                resolve(target, cfg.shop.unsubscribe_secret, spots)
            ledger = recording_ledger(cfg)
            try:
                if number is None:
                    done = do_unsubscribe(ledger, target, cfg.shop.unsubscribe_secret, source="cli", spots=spots)
                    email, added = done.email, done.added
                else:
                    added = unsubscribe_number(ledger, number, source="cli")
                was = None if added else ledger.suppression(email_hash(email) if email else phone_hash(number or ""))
            finally:
                ledger.close()
        except BadToken as exc:
            raise ConfigError(f"refused: {exc} (nothing was changed)") from None
        except ValueError as exc:
            raise ConfigError(f"{exc} (nothing was changed)") from None
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"email": email, "phone": number, "added": added}, config=cfg)
        return
    # already suppressed: as what (a person erased by `forget`, a bounce) rather than "unsubscribed"
    reason = (was or {}).get("reason") or UNSUBSCRIBED
    state = "unsubscribed" if added else "already unsubscribed" if reason == UNSUBSCRIBED \
        else f"already suppressed ({reason})"
    whose = "of this address" if number is None else "with this number"
    err_console().print(f"{email or number}: {state} (no cart {whose} gets another reminder)", highlight=False)


app = sub_typer("Suppressions: addresses that never get a reminder (unsubscribed, bounced, imported).")


@app.command("import")
def suppress_import(
    file: Annotated[Path, typer.Argument(help="A CSV export with an e-mail (or phone) column, or one address (or "
                                              "number) a line.", show_default=False)],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Recorded with each suppression.")] = "imported",
) -> None:
    """Suppress every address of FILE (another tool's unsubscribes, a bounce list, a do-not-mail list),
    or every phone number (an SMS tool's opt-outs: no text, call or e-mail to a cart with one).

    A CSV (`,`, `;` or tab) is read by its e-mail column (`email`, `Email Address`, ...), else
    its phone column (`phone`, `Phone Number`, `mobile`, ...), and a row without an address by
    its phone column (an export of e-mail and SMS opt-outs); any other file as one address or
    number a line (`#` starts a comment). A number without its country code is read in
    `sms.default_region`, else `shop.country`. Invalid entries are listed and the exit code is 1;
    the valid ones are imported anyway. Importing twice changes nothing.

    Example:

        cartrescue suppress import mailchimp-unsubscribed.csv --reason "mailchimp export"
        cartrescue suppress import sms-optouts.csv --reason "old SMS tool"
    """
    from cartrescue.suppressions import import_entries, read_addresses

    try:
        cfg = load(config)
        entries = list(read_addresses(file))  # before the ledger: a file it cannot read makes no ledger file
        ledger = recording_ledger(cfg)
        try:
            result = import_entries(ledger, entries, reason=reason, region=cfg.phone_region,
                                    countries=cfg.sms.countries)
        finally:
            ledger.close()
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"file": str(file), "added": result.added, "already": result.already,
                   "invalid": [{"where": where, "value": value} for where, value in result.invalid]}, config=cfg)
    else:
        stderr = err_console()
        for where, value in result.invalid[:20]:
            shown = clipped(repr(value), 80)
            stderr.print(error_line(f"{where}: not an e-mail address or phone number: {shown}", "warning", "yellow"))
        if len(result.invalid) > 20:
            stderr.print(error_line(f"… and {len(result.invalid) - 20} more invalid entries", "warning", "yellow"))
        stderr.print(f"{file}: {result.added} suppressed, {result.already} were already, "
                     f"{len(result.invalid)} invalid", highlight=False)
    if result.invalid:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


@app.command("mailbox")
def suppress_mailbox(
    path: Annotated[Path, typer.Argument(
        help="An mbox file, a Maildir, a folder of .eml files or one .eml file.", show_default=False)],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    trust_sender: Annotated[bool, typer.Option(
        "--trust-sender", help="A mail without a valid token unsubscribes its From: address "
                               "(never an automatic reply or a delivery report).")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="For cron: print nothing unless a mail was refused or something failed.")] = False,
) -> None:
    """Unsubscribe everyone who asked by mail (the mails `shop.unsubscribe_mailto` received), and
    suppress the addresses that bounced (the reports `smtp.envelope_from` received).

    Each mail's token (in its subject, as sent, replied to or forwarded, or in its text) is
    checked like a link's; its address is suppressed. A delivery report (RFC 3464) whose
    recipient's mailbox does not exist (5.1.1) suppresses that address as `bounced: no such user`, but
    only when the message it returns is one cartrescue sent to that address; a report about
    another message is listed (not ours, exit 0), a delay (4.x.x) suppresses nobody. A mailbox
    provider's spam-complaint report (RFC 5965 ARF, Feedback-Type abuse) suppresses the recipient
    of the message it returns as `complained: marked as spam`, again only for a message cartrescue
    sent (--json: complained). The mailbox is only read: each mail is
    remembered in the ledger by its Message-ID, so the next run skips it, and running it from
    cron is safe. A mail without a valid token is listed and the exit code is 1 (once: the next
    run has read it); so is a mail it cannot read (every run, until it can: the others are read).
    A mailbox without a single mail is a warning (not under --quiet), exit 0.

    Example:

        cartrescue suppress mailbox ~/Maildir/.unsubscribe --json
        cartrescue suppress mailbox ~/Maildir/.bounces --quiet
    """
    from cartrescue.unsubscribe_mail import check_mailbox, read_mailbox

    try:
        cfg = load(config)
        try:  # before the ledger is opened: a mailbox it cannot read makes no ledger file
            check_mailbox(path, cfg.shop.unsubscribe_secret)
        except ConfigError as error:
            raise cfg.locate(error) from None
        ledger = recording_ledger(cfg)
        try:
            result = read_mailbox(ledger, path, cfg.shop.unsubscribe_secret, trust_sender=trust_sender,
                                  unsubscribe_url=cfg.shop.unsubscribe_url)
        except ConfigError as error:
            raise cfg.locate(error) from None  # a key it names comes with the config file
        finally:
            ledger.close()
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"mailbox": str(path), "read": result.read, "added": result.added, "bounced": result.bounced,
                  "complained": result.complained, "already": result.already, "seen_before": result.seen,
                  "refused": [{"where": where, "from": sender, "why": why} for where, sender, why in result.refused],
                  "not_ours": [{"where": where, "recipients": recipients} for where, recipients, _ in result.not_ours],
                  "warnings": result.warnings},
                 config=cfg)
    else:
        stderr = err_console()
        for warning in [] if quiet else result.warnings:  # an empty mailbox is cron's usual case
            stderr.print(error_line(warning, "warning", "yellow"), soft_wrap=True)
        for where, sender, why in result.refused[:20]:
            stderr.print(error_line(f"{where}: {clipped(sender, 80) or 'no sender'}: {why}", "warning", "yellow"))
        if len(result.refused) > 20:
            stderr.print(error_line(f"… and {len(result.refused) - 20} more refused mails", "warning", "yellow"))
        for where, recipients, kind in [] if quiet else result.not_ours[:20]:  # backscatter: no failure
            stderr.print(f"{where}: a {kind} of no message cartrescue sent to {clipped(recipients, 80)}: "
                         "nobody suppressed", highlight=False, soft_wrap=True)
        if len(result.not_ours) > 20 and not quiet:
            stderr.print(f"… and {len(result.not_ours) - 20} more reports of other messages", highlight=False)
        if result.refused or not quiet:
            complained = f"{result.complained} complained, " if result.complained else ""
            stderr.print(f"{path}: {result.read} mails, {result.added} unsubscribed, {result.bounced} bounced, {complained}"
                         f"{result.already} were already, {len(result.refused)} refused, {result.seen} read before",
                         highlight=False)
    if result.refused:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


@app.command("list")
def suppress_list(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    email: Annotated[Optional[str], typer.Option(
        "--email", metavar="ADDRESS", help="Only say whether this address (or phone number) is suppressed.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, metavar="N", help="At most this many, newest first.")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Whole hashes and sources, whatever the terminal's width.")] = False,
) -> None:
    """List suppressions, newest first: contact hash, reason, source, date.

    The ledger keeps a hash of each suppressed address or phone number, not the address or the
    number; use `--email` to ask about one (exit 1 when it is not suppressed). `--json` names the
    hash `contact_hash` (and, as before, `email_hash`, the same hash for a number too). Each suppression is one line; a long
    source ends in an ellipsis (`--wide` shows it whole, and the whole hash).

    Example:

        cartrescue suppress list --email bob@example.com
    """
    from cartrescue.suppressions import check, listing

    try:
        cfg = load(config)
        ledger = reading_ledger(cfg)  # lists; never makes a file
        try:
            if email is not None:
                try:
                    found = check(ledger, email, cfg.phone_region)
                except ValueError as exc:  # neither an address nor a number: a usage error, exit 2
                    raise ConfigError(f"--email: {exc}") from None
                rows = [] if found is None else [found]
            else:
                rows = listing(ledger, limit)
        finally:
            ledger.close()
    except CartrescueError as error:
        fail(error, as_json)
    keys = ("email_hash", "reason", "source", "created_at")
    if as_json:  # the hash is an address's or a number's: contact_hash; email_hash kept for the scripts reading it
        json_out({"suppressions": [{"contact_hash": row["email_hash"], **{key: row[key] for key in keys}}
                                   for row in rows]}, config=cfg)
    else:
        from rich.text import Text

        from cartrescue.output import Column, FitTable
        from cartrescue.text import printable

        console = out_console()
        table = FitTable([Column("contact hash"), Column("reason"), Column("source"), Column("since (UTC)")],
                         [("source", 10), ("reason", 21), ("source", 6), ("reason", 10)], wide=wide)
        for row in rows:
            table.add_row(row["email_hash"] if wide else row["email_hash"][:16] + "…", Text(printable(row["reason"])),
                          Text(printable(row["source"])), f"{row['created_at']:%Y-%m-%d %H:%M}")
        console.print(table.render(console.width), crop=False)
        if email is not None:
            err_console().print(f"{email}: {'suppressed' if rows else 'not suppressed'}", highlight=False)
    if email is not None and not rows:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


@app.command("remove")
def suppress_remove(
    email: Annotated[str, typer.Argument(help="The address (or phone number) to message again.", show_default=False)],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Also lift the suppression `forget` left for an erased person (they asked to hear "
                        "from the shop again).")] = False,
) -> None:
    """Lift the suppression of an address or a phone number (a mistaken import, a customer who
    asked to come back, or texted START after STOP).

    Exit 1 when it was not suppressed. An address or number that `forget` erased is refused
    (exit 2, nothing changed) unless `--force` is given: its suppression is what keeps the shop's
    export from bringing the person back.

    Example:

        cartrescue suppress remove bob@example.com
        cartrescue suppress remove +46701234567
    """
    from cartrescue.suppressions import as_number, remove

    try:
        cfg = load(config)
        try:  # a number is named as unsubscribe names it: E.164, under "phone"
            number = as_number(email, cfg.phone_region)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        # Nothing to remove from a ledger not there (no file made); an older one is brought up to date
        # first, as every command that writes does: read as it was, a column it lacks was a crash (exit 70).
        ledger = cfg.open_ledger(create=False, upgrade=True)
        try:
            removed = remove(ledger, email, cfg.phone_region, force=force)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        finally:
            ledger.close()
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"email": email if number is None else None, "phone": number, "removed": removed}, config=cfg)
    else:
        err_console().print(f"{number or email}: {'suppression removed' if removed else 'was not suppressed'}",
                            highlight=False)
    if not removed:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


