"""`report`: what the reminders won back, and how much of that they caused; tables, JSON, CSV, HTML, e-mail."""

from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cartrescue.commands.common import (
    ConfigOption,
    JsonOption,
    NowOption,
    closed_pipe,
    err_console,
    error_json,
    error_line,
    fail,
    json_out,
    last_net,
    load,
    names_stdout,
    no_stdout,
    out_console,
    output_file,
    parse_now,
    write_whole,
)
from cartrescue.errors import CartrescueError, ConfigError, ExitCode

BREAKDOWNS = ("step", "tier", "variant", "locale", "channel", "day")

#: The report's period, as ``report`` and ``report-all`` take it (:func:`compute`).
SinceOption = Annotated[Optional[str], typer.Option(
    "--since", metavar="DATE", help="First day (shop's timezone) or ISO time of the period (default: report.period before --until).")]
UntilOption = Annotated[Optional[str], typer.Option(
    "--until", metavar="DATE", help="Last day (inclusive), or the ISO time the period ends just before (default: now).")]


def parse_bound(value: str | None, tz: Any, *, end: bool) -> datetime | None:
    """``2026-11-23`` (a day in the shop's timezone: its start, or for ``--until`` its end) or an
    ISO 8601 time; aware UTC. Periods are read inclusive of their end, so ``--until`` a time ends
    the period just before it: where ``--since`` that time begins the next, no message or order
    is counted in both. That microsecond is taken in UTC: on the shop's clock it may fall in an
    hour the clocks skip or repeat, which read an hour off."""
    if value is None:
        return None
    from cartrescue.config import within_reach

    option = "--until" if end else "--since"
    try:
        if len(value.strip()) == 10:
            day = within_reach(date.fromisoformat(value.strip()), option)
            moment = datetime.combine(day + timedelta(days=1) if end else day, time(0), tzinfo=tz)
            return _before(moment) if end else moment.astimezone(timezone.utc)
        moment = within_reach(datetime.fromisoformat(value.strip()), option)
    except ValueError:
        raise ConfigError(f"{option}: expected a date like 2026-11-23 or an ISO 8601 time, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return _before(moment) if end else moment.astimezone(timezone.utc)


def check_period(since: str | None, until: str | None) -> None:
    """``--since`` and ``--until`` as every shop reads them, checked before any shop is: a value
    that is no date or time (or out of reach), and a period that ends before it begins on every
    shop's clock (two days, or two times with their offsets). ``report-all`` says such a mistake
    once, exit 2: said once a shop, it was the same line 200 times in an agency's round. A period
    empty on some shops' clocks only (a time against a day) is each shop's, as :func:`compute` finds."""
    start, end = parse_bound(since, timezone.utc, end=False), parse_bound(until, timezone.utc, end=True)
    if since is None or until is None or start is None or end is None or start < end:
        return
    if _a_day(since) and _a_day(until):
        raise ConfigError(f"--since {since.strip()} is after --until {until.strip()}: the period has no day")
    if _with_offset(since) and _with_offset(until):
        raise ConfigError(f"--since {since.strip()} is not before --until {until.strip()}: the period is empty")


def _a_day(value: str) -> bool:
    """A day (``2026-11-23``), as :func:`parse_bound` tells one from a time."""
    return len(value.strip()) == 10


def _with_offset(value: str) -> bool:
    """A time with its offset (``Z``, ``+01:00``): the same instant on every shop's clock."""
    return not _a_day(value) and datetime.fromisoformat(value.strip()).tzinfo is not None


def _before(moment: datetime) -> datetime:
    """The instant just before ``moment``, in UTC. Subtracted on a shop's clock (Python's aware
    arithmetic is wall-clock arithmetic) it could land in a skipped or repeated hour."""
    return moment.astimezone(timezone.utc) - timedelta(microseconds=1)


def period_start(after: datetime, period: timedelta, tz: Any) -> datetime:
    """The start of a default period of ``period`` up to ``after``: its whole days are the shop's
    days, the same clock time that many days before (167 or 169 hours over a clock change), so
    weekly digests tile and ``--until DAY`` covers the seven days it ends; a part of a day is a
    plain duration (taken off in UTC: on the shop's clock 12 hours across the skipped hour were 11)."""
    days, rest = divmod(period, timedelta(days=1))
    after = after.astimezone(tz)
    start = datetime.combine(after.date() - timedelta(days=days), after.time(), tzinfo=tz)
    return start.astimezone(timezone.utc) - rest


def report(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    by: Annotated[Optional[list[str]], typer.Option(
        "--by", metavar="DIMENSION", help="Breakdown to show: step, tier, variant, locale, channel or day (repeatable; default step).")] = None,
    csv_dir: Annotated[Optional[Path], typer.Option("--csv", metavar="DIR", help="Write one CSV per table into DIR.")] = None,
    html: Annotated[Optional[Path], typer.Option(
        "--html", metavar="FILE", help=(
            "Write one self-contained HTML file (inline CSS and SVG charts, no network); -: print it in place of "
            "the report."))] = None,
    email: Annotated[Optional[str], typer.Option(
        "--email", metavar="ADDRESS", help="Send the report (HTML attached) to ADDRESS through the configured SMTP relay.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=(
        "Print nothing but errors and warnings (a bad order row): cron with --email mails those."))] = False,
) -> None:
    """What the reminders won back (**attributed**: any order within `report.attribution_window`
    of a message) and how much of that they really caused (**incremental**: messaged carts against
    the held-out ones, with a 95 % interval); A/B results, costs and ROI per tier, the funnel.

    Reads the ledger and the source's orders; writes nothing but the files asked for (and, with
    `report.auto_promote`, a promoted A/B winner). See docs/reporting.md for what each number means.

    Exit codes: 0 reported, 1 the --email digest was not sent (the relay refused it or could not be
    reached; the rest is written), 2 usage or config error (a ledger of an older cartrescue, a
    file it cannot write), 3 the source's orders cannot be read.

    Examples (the weekly digest from cron, Monday 07:00):

        cartrescue report --since 2026-11-16 --until 2026-11-22 --by tier --html report.html

        0 7 * * 1 cd /srv/shop && cartrescue report --quiet --email owner@shop.example.com
    """
    chosen = list(dict.fromkeys(by or ["step"]))
    try:
        no_stdout("--csv", csv_dir, "one file per table goes into a folder: give one (--csv report-csv)")
        if as_json:
            no_stdout("--html", html, "--json writes to stdout too: give --html a file (--html report.html)")
        unknown = [name for name in chosen if name not in BREAKDOWNS]
        if unknown:
            raise ConfigError(f"--by {unknown[0]}: expected one of {', '.join(BREAKDOWNS)}")
        if email is not None:
            from cartrescue.contacts import is_valid_email

            if not is_valid_email(email):
                raise ConfigError(f"--email: not a valid address: {email!r}")
        document, config_obj = compute(config, now, since, until)
        if email is not None:  # before anything is written: an unset ${SMTP_PASSWORD} went to the relay as it stands
            config_obj.require_env("smtp")
        outputs: dict[str, Any] = {}
        if csv_dir is not None:
            from cartrescue.report.files import write_csv

            with output_file("--csv", csv_dir):  # a table that cannot be written: exit 2 naming it, no "bug"
                outputs["csv"] = [str(path) for path in write_csv(document, csv_dir)]
        page = None
        if html is not None or email is not None:
            from cartrescue.report.html import render_html

            page = render_html(document, config_obj.shop.name, config_obj.shop.default_locale)
        if html is not None and not names_stdout(html):  # --html -: the page is printed in place of the report
            with output_file("--html", html):
                html.write_text(page or "", encoding="utf-8")
            outputs["html"] = str(html)
        mail_error = None
        if email is not None:
            from cartrescue.report.mail import send_report

            try:
                outputs["email"] = send_report(config_obj, document, page or "", email)
            except CartrescueError as error:
                mail_error = error
    except CartrescueError as error:
        fail(error, as_json)
    except Exception as error:  # noqa: BLE001 - a bug still ends in one line and one JSON document
        last_net(error, as_json)
    document["outputs"] = outputs
    if mail_error is not None:
        document["error"] = error_json(mail_error)
    if as_json:
        json_out(document, config=config_obj, decides=True)
    elif names_stdout(html):
        try:
            write_whole(page or "")
        except BrokenPipeError as exc:
            closed_pipe(exc, False)
    elif not quiet:
        from cartrescue.report.terminal import print_report

        print_report(document, out_console(), chosen, config_obj.shop.default_locale)
        for kind, value in outputs.items():
            out_console().print(f"{kind}: {value}", markup=False)
    if mail_error is not None:
        err_console().print(error_line(str(mail_error)), soft_wrap=True)
        raise typer.Exit(int(ExitCode.SOME_FAILED))


def local_time(moment: datetime, tz: Any) -> str:
    """``moment`` on the shop's clock, to the minute (to the second where it has any)."""
    moment = moment.astimezone(tz)
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment.second else f"{moment:%Y-%m-%d %H:%M}"


def empty_period(config: Any, since: str | None, until: str | None, start: datetime, end: datetime,
                 at: datetime) -> str:
    """Why the period ``[start, end]`` has no time before ``at`` in it, naming the options as given
    and its bounds on the shop's clock: "--since 2026-11-30 23:00 UTC" for ``--since 2026-12-01``
    in Stockholm named a day the owner never typed, and an --until or a --since never given."""
    from cartrescue.config.types import duration_text

    tz, zone = config.shop.tz, config.shop.timezone
    begins = f"the period would begin at {local_time(start, tz)}"
    if since is None:  # the report.period counted back from --until
        return (f"--until {until and until.strip()}: the report.period ({duration_text(config.report.period)}) "
                f"before it begins at {local_time(start, tz)}, after now ({local_time(at, tz)} {zone}): "
                "give --since, or an --until that has begun")
    if start >= at:
        return f"--since {since.strip()} is not before now: {begins}, and it is {local_time(at, tz)} ({zone})"
    if until is None:
        return (f"--since {since.strip()} is not before the start of the minute the report runs in "
                f"({local_time(end, tz)} {zone}), where its period ends: {begins}")
    return reversed_period(config, since, until, start, end)


def reversed_period(config: Any, since: str, until: str, start: datetime, end: datetime) -> str:
    """``--since`` not before ``--until`` (``end`` the period's last microsecond), said with the
    values as given and the bounds they make on the shop's clock (``report``, ``survey``)."""
    tz = config.shop.tz
    return (f"--since {since.strip()} is not before --until {until.strip()}: the period would begin at "
            f"{local_time(start, tz)} and end at {local_time(end + timedelta(microseconds=1), tz)} "
            f"({config.shop.timezone})")


def compute(config_path: Path | None, now: str | None, since: str | None, until: str | None) -> tuple[dict[str, Any], Any]:
    """The report document of the config at ``config_path`` for the period of ``--since``,
    ``--until`` and ``--now`` as ``report`` reads them, and the loaded config: the one entry point
    of ``report`` and of ``report-all`` (each shop's figures are its own report's). Problems
    reading the orders are said on stderr as they come and listed in ``problems``; the source's
    warnings (a table the account may not read) are said there at the end, and listed in ``warnings``."""
    from cartrescue.job import resolve_now
    from cartrescue.report.analysis import Period
    from cartrescue.report.build import make_report

    config = load(config_path, decides=True)  # the period ends at a clock the config pins: said
    at = resolve_now(config, parse_now(now))
    tz = config.shop.tz
    bound = parse_bound(until, tz, end=True)
    # Without --until the period is (the minute the report runs in - report.period, that minute]:
    # cron starts Monday's digest and a `run --send` in the same second, and the tenths of a
    # second between them decided whether that run's messages went in this digest, next week's,
    # both or neither. A run at 07:00:00.3 now goes in next week's, whenever in 07:00 either
    # digest runs; a run pinned to the report's own instant (the demo's `now:`) in this one.
    minute = at.replace(second=0, microsecond=0)
    end = bound or minute
    start = parse_bound(since, tz, end=False) or (
        period_start(minute, config.report.period, tz) + timedelta(microseconds=1) if bound is None
        else period_start(bound + timedelta(microseconds=1), config.report.period, tz))
    if start >= at or start >= end:
        raise ConfigError(empty_period(config, since, until, start, end, at))
    # A period reaching past now ends now: with a pinned --now (a replay), --until a later day
    # counted the orders placed after that moment as if they had happened.
    end = min(end, at)
    problems: list[str] = []
    stderr = err_console()

    def on_problem(problem: Any) -> None:
        problems.append(str(problem))
        stderr.print(error_line(str(problem), "warning", "yellow"), soft_wrap=True)

    document = make_report(config, Period(start, end, max(at, end)), on_problem)
    document["problems"] = problems[:1000]
    for warning in document["warnings"]:  # a table the account may not read: cron mails stderr
        stderr.print(error_line(warning, "warning", "yellow"), soft_wrap=True)
    return document, config
