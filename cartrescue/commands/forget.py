"""`forget EMAIL`: erase one person from the ledger, keeping only a hashed suppression."""

from pathlib import Path
from typing import Annotated, Any

import typer

from cartrescue.commands.common import (
    ConfigOption,
    JsonOption,
    err_console,
    error_json,
    error_line,
    fail,
    json_out,
    load,
    recording_ledger,
)
from cartrescue.errors import CartrescueError, ConfigError


class FilesHoldThem(ConfigError):
    """``forget`` without ``--files`` or ``--keep-files`` of a person whom outbox files or
    call-list rows still hold: erased, the ledger's rows were the only link to the files, and
    ``forget --files`` could never find them again. Nothing was changed (exit 2)."""

    def __init__(self, contact: str, files: list[str], rows: int) -> None:
        from cartrescue.text import counted

        held = " and ".join(part for part in (counted(len(files), "outbox file") if files else "",
                                               counted(rows, "call-list row") if rows else "") if part)
        super().__init__(f"{contact}: the shop's files still hold this person ({held}), and the ledger's rows "
                         "are what finds them: run again with --files to delete them with the erasure, or with --keep-files "
                         "to erase the ledger only and leave them (listed, for you to deal with) "
                         "(nothing was changed)")
        self.files, self.rows = files, rows


def forget(
    email: Annotated[str, typer.Argument(help="The address (or phone number) to erase.", show_default=False,
                                         metavar="EMAIL|PHONE")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    files: Annotated[bool, typer.Option(
        "--files", help="Also remove the person (the address or phone number given) from the files cartrescue "
                        "wrote for the shop. An address: its rows in the "
                        "call-list CSV, the files `run --outbox` wrote for it (.eml, .json, .sms.txt), and the "
                        "`send-test --outbox` files sent to it or rendered from its carts. A number: its rows in "
                        "the call list, the texts `run --outbox` wrote for it (.sms.txt) and the `send-test "
                        "--outbox` files rendered from its carts.")] = False,
    keep_files: Annotated[bool, typer.Option(
        "--keep-files", help="Erase the ledger only, and leave the person's call-list rows and outbox files "
                             "where they are (listed: once the ledger is erased, forget cannot find the files "
                             "again). Without it or --files, forget of a person such files hold changes "
                             "nothing (exit 2).")] = False,
) -> None:
    """Erase everything the ledger holds about one person, by address or phone number (a GDPR erasure request).

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
    a text again. The rows stay (they are also the record of the carts' e-mail steps); its test
    messages (rendered from its carts) go. Its files are its call-list rows, the texts `run
    --outbox` wrote for it and the `send-test --outbox` files of its carts (an e-mail's file is
    the address's: `forget ADDRESS`).

    The call-list CSV and `--outbox` folders are the shop's files: `--files` removes the
    person's rows and files there with the erasure; `--keep-files` leaves them and lists them;
    with neither, `forget` of a person they hold changes nothing (exit 2): the ledger's rows are
    what finds the files. The shop's own database and exports are the shop's to erase.

    Examples:

        cartrescue forget bob@example.com --files

        cartrescue forget +46701234567
    """
    from cartrescue.lifecycle import forget as erase
    from cartrescue.lifecycle import forgettable

    try:
        cfg = load(config)
        if files and keep_files:
            raise ConfigError("--files deletes the person's files, --keep-files leaves them: give one "
                              "(nothing was changed)")
        try:  # before the ledger is opened: a refused request makes no ledger file
            address, number = forgettable(email, cfg.phone_region)
        except ValueError as exc:
            raise ConfigError(f"{exc} (nothing was changed)") from None
        call_list = cfg.path(cfg.call_list.path)
        # Counted before the ledger changes: a list it cannot read leaves the ledger as it was.
        listed = 0 if files else _call_list_rows(call_list, address, number, cfg.phone_region, remove=False)

        def held(found: list[str]) -> None:
            if found or listed:
                raise FilesHoldThem(address or number or email, found, listed)

        ledger = recording_ledger(cfg)
        try:
            try:
                done = erase(ledger, email, region=cfg.phone_region, before=None if files or keep_files else held)
            except ValueError as exc:
                raise ConfigError(f"{exc} (nothing was changed)") from None
            if files:
                listed = _call_list_rows(call_list, done.email, done.phone, cfg.phone_region, remove=True)
            gone, missing = _delete(cfg, ledger, done.files) if files else ([], [])
            kept = [str(_where_now(cfg, Path(name))) for name in done.files] if not files else []
        finally:
            ledger.close()
    except FilesHoldThem as error:
        if as_json:  # one document: the error, and what holds the person; as any failure's, no warnings (README)
            json_out({"error": error_json(error), "call_list": {"path": str(call_list), "rows": error.rows},
                      "files": error.files})
        err_console().print(error_line(str(error)), soft_wrap=True)
        raise typer.Exit(int(error.exit_code)) from None
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"email": done.email, "phone": done.phone, "erased": done.rows, "codes_kept": done.codes_kept,
                  # suppressed: how it ends, always; suppression_added: False when it was already
                  "codes_freed": done.codes_freed, "suppressed": True, "suppression_added": done.suppressed,
                  "call_list": {"path": str(call_list), "rows": listed, "removed": files and bool(listed)},
                  "files": done.files, "files_removed": gone, "files_not_found": missing, "files_kept": kept,
                  "exit_code": 1 if missing else 0}, config=cfg)
    else:
        _report(done, call_list, listed, files, gone, missing, kept)
    if missing:  # the erasure is not complete: a script must not take it for done
        raise typer.Exit(1)


def _call_list_rows(call_list: Path, email: str | None, phone: str | None, region: str | None, *,
                    remove: bool) -> int:
    """The person's rows in the call list (:func:`~cartrescue.channels.call_list.rows_of`), removed
    with ``remove`` (after the ledger's erasure: a failure says what is left)."""
    from cartrescue.channels.call_list import rows_of

    try:
        return rows_of(call_list, email, phone=phone, region=region, remove=remove)
    except (OSError, UnicodeDecodeError) as exc:
        done = "the ledger is erased, its rows of this person are not" if remove else "nothing was changed"
        raise CartrescueError(f"{call_list}: the call list could not be {'rewritten' if remove else 'read'} "
                              f"({getattr(exc, 'strerror', None) or exc}); {done}") from None


def _delete(cfg: Any, ledger: Any, recorded: list[str]) -> tuple[list[str], list[str]]:
    """Delete the outbox files the ledger ``recorded``, each where it is now: the paths deleted,
    and the recorded names found nowhere. Those deleted leave the ledger's rows
    (:func:`~cartrescue.lifecycle.files_deleted`), even when a later one cannot be: a later
    ``forget`` (the address of a number forgotten first) must not look for them again."""
    from cartrescue.lifecycle import files_deleted

    gone: list[str] = []
    missing: list[str] = []
    deleted: list[str] = []
    try:
        for name in recorded:
            path = _where_now(cfg, Path(name))
            if _remove(path):
                gone.append(str(path))
                deleted.append(name)
            else:
                missing.append(name)
    finally:
        files_deleted(ledger, deleted)
    return gone, missing


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


def _report(done: Any, call_list: Path, listed: int, files: bool, gone: list[str], missing: list[str],
            kept: list[str]) -> None:
    from rich.text import Text

    from cartrescue.text import counted, printable

    console = err_console()
    counts = ", ".join(f"{n} from {table}" for table, n in done.rows.items() if n) or "nothing was left in the ledger"
    if done.phone and done.rows.get("cr_message"):
        counts = f"removed from {counted(done.rows['cr_message'], 'message')}"
    codes = ""
    if done.codes_kept or done.codes_freed:
        codes = f"; codes: {done.codes_kept} kept spent without the address, {done.codes_freed} back in their pool"
    state = "suppressed under its hash" if done.suppressed else "was suppressed already (hash only)"
    reach = "no text message will reach it" if done.phone else "no reminder will reach it"
    console.print(Text(printable(f"{done.contact}: forgotten: {counts}{codes}; {state}: {reach}")),
                  soft_wrap=True)
    if listed:
        rows = counted(listed, "row")
        what = f"removed {rows}" if files else \
            (f"left {rows} (--keep-files): the file is the shop's; remove {'it' if listed == 1 else 'them'} "
             "yourself (the next delivering run removes the rows of suppressed people)")
        console.print(Text(printable(f"call list {call_list}: {what}")), soft_wrap=True)
    if done.files:
        what = f"deleted {len(gone)}" if files else \
            ("left (--keep-files): delete these yourself, the ledger no longer knows them, so forget cannot "
             "find them again")
        whom = "number" if done.phone else "address"
        console.print(Text(printable(f"{counted(len(done.files), 'outbox file')} written for this {whom} by --outbox: "
                                     f"{what}")), soft_wrap=True)
        for name in kept:
            console.print(Text(printable(f"  {name}")), soft_wrap=True)
    if missing:
        console.print(Text(printable(f"error: {counted(len(missing), 'outbox file')} not found where the ledger recorded "
                                     "them, nor beside the config (moved or copied elsewhere?): find and delete "
                                     "them yourself, the ledger no longer knows them:")), soft_wrap=True)
        for name in missing:
            console.print(Text(printable(f"  {name}")), soft_wrap=True)
