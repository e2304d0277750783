"""`forget EMAIL`: erase one person from the ledger, keeping only a hashed suppression."""

from pathlib import Path
from typing import Annotated, Any

import typer

from cartrescue.commands.common import ConfigOption, JsonOption, err_console, fail, json_out, load, recording_ledger
from cartrescue.errors import CartrescueError, ConfigError


def forget(
    email: Annotated[str, typer.Argument(help="The address (or phone number) to erase.", show_default=False,
                                         metavar="EMAIL|PHONE")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    files: Annotated[bool, typer.Option(
        "--files", help="Also remove the address from the files cartrescue wrote for the shop: its rows in the "
                        "call-list CSV, the files `run --outbox` wrote for it (.eml, .json, .sms.txt), and the "
                        "`send-test --outbox` files sent to it or rendered from its carts.")] = False,
) -> None:
    """Erase everything the ledger holds about one address (a GDPR erasure request).

    Deletes its decisions, test messages (sent to it, or rendered from its carts), survey answers
    and any other ledger row with the address, and keeps its messages without the address: each
    is the record of a cart's step, which must never go out twice. Incentive codes lose the
    address (a code it may have received stays spent; one whose message never went out goes back
    to its pool). What is kept is a suppression under the
    address's hash (reason `forgotten`): no cart of the address gets a reminder again, and the
    ledger does not learn the address back from the shop's carts. The unsubscribe mails and
    text replies it sent stay read (`cr_inbound`), without its hash. Running it twice changes
    nothing.

    A phone number (E.164, or read in `sms.default_region` / `shop.country`) is removed from
    every message that recorded it and kept only as a suppression under its hash: it never gets
    a text again. The rows stay (they are also the record of the carts' e-mail steps).

    The call-list CSV and `--outbox` folders are the shop's files: `forget` counts the
    address's rows and files there, and removes them only with `--files`. The shop's own
    database and exports are the shop's to erase.

    Examples:

        cartrescue forget bob@example.com --files

        cartrescue forget +46701234567
    """
    from cartrescue.channels.call_list import rows_of
    from cartrescue.lifecycle import forget as erase
    from cartrescue.lifecycle import forgettable

    try:
        cfg = load(config)
        try:  # before the ledger is opened: a refused request makes no ledger file
            forgettable(email, cfg.phone_region)
        except ValueError as exc:
            raise ConfigError(f"{exc} (nothing was changed)") from None
        ledger = recording_ledger(cfg)
        try:
            done = erase(ledger, email, region=cfg.phone_region)
        except ValueError as exc:
            raise ConfigError(f"{exc} (nothing was changed)") from None
        finally:
            ledger.close()
        call_list = cfg.path(cfg.call_list.path)
        try:
            listed = rows_of(call_list, done.email, phone=done.phone, region=cfg.phone_region, remove=files)
        except (OSError, UnicodeDecodeError) as exc:  # the ledger is erased already: say what is left
            raise CartrescueError(f"{call_list}: the call list could not be {'rewritten' if files else 'read'} "
                                  f"({getattr(exc, 'strerror', None) or exc}); the ledger is erased, its rows "
                                  "of this person are not") from None
        gone: list[str] = []
        missing: list[str] = []
        for name in done.files if files else ():
            path = _where_now(cfg, Path(name))
            if _remove(path):
                gone.append(str(path))
            else:
                missing.append(name)
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"email": done.email, "phone": done.phone, "erased": done.rows, "codes_kept": done.codes_kept,
                  # suppressed: how it ends, always; suppression_added: False when it was already
                  "codes_freed": done.codes_freed, "suppressed": True, "suppression_added": done.suppressed,
                  "call_list": {"path": str(call_list), "rows": listed, "removed": files and bool(listed)},
                  "files": done.files, "files_removed": gone, "files_not_found": missing,
                  "exit_code": 1 if missing else 0}, config=cfg)
    else:
        _report(done, call_list, listed, files, gone, missing)
    if missing:  # the erasure is not complete: a script must not take it for done
        raise typer.Exit(1)


def _where_now(cfg: Any, recorded: Path) -> Path:
    """Where an outbox file the ledger recorded is now: where it was written, or, when the shop's
    folder has moved since (the ledger keeps absolute paths), the same file in the folder of the
    same name beside the config, or in ``outbox.path``."""
    if recorded.exists():
        return recorded
    for folder in (cfg.path(recorded.parent.name), cfg.outbox_folder(None)):
        moved = folder / recorded.name
        if moved.exists():
            return moved
    return recorded


def _remove(path: Path) -> bool:
    """Delete an outbox file; ``False`` when it is not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConfigError(f"{path}: cannot delete: {exc.strerror or exc}") from None
    return True


def _report(done: Any, call_list: Path, listed: int, files: bool, gone: list[str], missing: list[str]) -> None:
    from rich.text import Text

    from cartrescue.text import counted, printable

    console = err_console()
    counts = ", ".join(f"{n} from {table}" for table, n in done.rows.items() if n) or "nothing was left in the ledger"
    if done.phone and done.rows.get("cr_message"):
        counts = f"removed from {done.rows['cr_message']} messages"
    codes = ""
    if done.codes_kept or done.codes_freed:
        codes = f"; codes: {done.codes_kept} kept spent without the address, {done.codes_freed} back in their pool"
    state = "suppressed under its hash" if done.suppressed else "was suppressed already (hash only)"
    reach = "no text message will reach it" if done.phone else "no reminder will reach it"
    console.print(Text(printable(f"{done.contact}: forgotten: {counts}{codes}; {state}: {reach}")),
                  soft_wrap=True)
    if listed:
        what = f"removed its {listed} rows" if files else \
            f"has {listed} rows of this address: the file is the shop's; remove them, or run again with --files"
        console.print(Text(printable(f"call list {call_list}: {what}")), soft_wrap=True)
    if done.files:
        what = f"deleted {len(gone)}" if files else \
            ("delete these yourself: the ledger no longer knows them, so forget cannot find them again "
             "(next time, forget --files deletes them with the erasure)")
        console.print(Text(printable(f"{counted(len(done.files), 'outbox file')} written for this address by --outbox: "
                                     f"{what}")), soft_wrap=True)
        if not files:
            for name in done.files:
                console.print(Text(printable(f"  {name}")), soft_wrap=True)
    if missing:
        console.print(Text(printable(f"error: {counted(len(missing), 'outbox file')} not found where the ledger recorded "
                                     "them, nor beside the config (moved or copied elsewhere?): find and delete "
                                     "them yourself, the ledger no longer knows them:")), soft_wrap=True)
        for name in missing:
            console.print(Text(printable(f"  {name}")), soft_wrap=True)
