"""The ``Config`` root model: the whole file, its cross-section checks, and what commands ask of
it (paths beside the file, the ledger it opens, the keys nothing reads).

Apart from the sections it holds, and from :mod:`cartrescue.config.loading`, which makes one.
"""

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field, PrivateAttr, model_validator

from cartrescue.config.channels import (
    CallListConfig,
    OutboxConfig,
    SmsConfig,
    SmtpConfig,
    WebhookConfig,
)
from cartrescue.config.eligibility import EligibilityConfig
from cartrescue.config.ignored import (
    CSV_ONLY,
    SMS_BEYOND_TEXTS,
    SURVEY_ANSWERS,
    SURVEY_OFF,
    set_apart,
    unread_budget_keys,
)
from cartrescue.config.ledger import LedgerConfig
from cartrescue.config.lines import line_of
from cartrescue.config.messages import ExperimentsConfig, LinksConfig, SurveyConfig
from cartrescue.config.priority import PriorityConfig, Tier
from cartrescue.config.report import DoctorConfig, ReportConfig
from cartrescue.config.sequences import Incentive, Sequence, default_sequences
from cartrescue.config.shop import ShopConfig
from cartrescue.config.source import SourceConfig
from cartrescue.config.types import Model, duration_text
from cartrescue.errors import ConfigError, LedgerError

if TYPE_CHECKING:
    from cartrescue.ledger import Ledger, RunsOver


DEFAULT_CONFIG = "cartrescue.yaml"


#: The longest each name or value of the config that the ledger keeps may be, in characters: the
#: narrowest column of its name (:func:`cartrescue.ledger.config_value_limits`, which a test holds
#: this to). Written out, because reading them from the tables imported SQLAlchemy and the
#: ledger's models (~0.3 s of CPU) as every command read its config: in ``run --workers N`` that
#: was before its first fork, while the other core waited.
LEDGER_WIDTHS = {"tier": 64, "sequence": 64, "template": 191, "variant": 64, "pool": 32, "value": 32, "shop": 191}

#: ``report`` waits this many times ``ledger.statement_wait`` for a statement's answer: its
#: queries group and sort a whole period's rows (10 minutes by default).
PERIOD_READS = 10


def _time_as_text(value: Any) -> Any:
    """``now: 2026-11-20T10:00:00Z`` unquoted: YAML reads a time, not the text it was."""
    return value.isoformat() if isinstance(value, date) else value


class Config(Model):
    """The whole file. ``base_dir`` is the config file's folder: relative paths resolve there."""

    shop: ShopConfig = ShopConfig()
    source: SourceConfig
    ledger: LedgerConfig = LedgerConfig()
    eligibility: EligibilityConfig = EligibilityConfig()
    priority: PriorityConfig = PriorityConfig()
    sequences: dict[str, Sequence] = Field(default_factory=default_sequences)
    templates: Path | None = None  # None: the templates shipped with cartrescue
    call_list: CallListConfig = CallListConfig()
    outbox: OutboxConfig = OutboxConfig()
    experiments: ExperimentsConfig = ExperimentsConfig()
    smtp: SmtpConfig = SmtpConfig()
    webhook: WebhookConfig = WebhookConfig()
    sms: SmsConfig = SmsConfig()
    doctor: DoctorConfig = DoctorConfig()
    survey: SurveyConfig = SurveyConfig()
    links: LinksConfig = LinksConfig()
    report: ReportConfig = ReportConfig()
    # pin the clock (demos, reproducible tests); never in production
    now: Annotated[str | None, BeforeValidator(_time_as_text)] = None
    base_dir: Path = Path(".")
    config_file: Path | None = None  # set by load_config: errors found later name the file too
    unset_env: dict[str, str] = Field(default_factory=dict)  # set by load_config: {secret key: its unset variable}
    #: The line of each key of the file (:func:`lines_of_keys`), set by load_config: a warning about a key names it.
    _key_lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _templates_exist(self) -> "Config":
        if self.templates is not None and not self.path(self.templates).is_dir():
            raise ValueError(f"templates: no such folder: {self.path(self.templates)} (null = the shipped templates)")
        return self

    @model_validator(mode="after")
    def _tiers_use_known_sequences(self) -> "Config":
        for tier in self.priority.tiers:
            if tier.sequence not in self.sequences:
                raise ValueError(
                    f"{self.priority.key(tier.name)}.sequence: unknown sequence {tier.sequence!r}"
                    f" (known: {', '.join(sorted(self.sequences))})"
                )
        return self

    @model_validator(mode="after")
    def _step_channels_name_tiers(self) -> "Config":
        tiers = {tier.name for tier in self.priority.tiers}
        for name, sequence in self.sequences.items():
            for number, step in enumerate(sequence.steps):
                unknown = sorted(set(step.tier_channels) - tiers)
                if unknown:
                    raise ValueError(f"sequences.{name}.steps[{number}].tier_channels: unknown tier {unknown[0]!r} "
                                     f"(known: {', '.join(sorted(tiers))})")
        return self

    @model_validator(mode="after")
    def _steps_come_due_within_max_age(self) -> "Config":
        """A step due no sooner than ``eligibility.max_age`` after the cart's last activity
        never goes out: a run no longer reads a cart that old (:attr:`Planner.window`)."""
        max_age = self.eligibility.max_age
        for name, sequence in self.sequences.items():
            for number, step in enumerate(sequence.steps):
                if step.delay >= max_age:
                    raise ValueError(
                        f"sequences.{name}.steps[{number}].delay: {duration_text(step.delay)} is not shorter than "
                        f"eligibility.max_age ({duration_text(max_age)}): no run reads a cart that long after "
                        "its last activity, so the step would never go out (raise max_age or shorten the delay)")
        return self

    @model_validator(mode="after")
    def _survey_steps_exist(self) -> "Config":
        """A survey step past every sequence's last asks nobody, without a word."""
        if self.survey.url and self.survey.steps and self.sequences:
            longest = max(len(sequence.steps) for sequence in self.sequences.values())
            beyond = [step for step in self.survey.steps if step > longest]
            if beyond:
                raise ValueError(f"survey.steps: step {beyond[0]} is past the last step of every sequence "
                                 f"(the longest has {longest})")
        return self

    @model_validator(mode="after")
    def _names_fit_the_ledger(self) -> "Config":
        """Every name the ledger keeps (:meth:`ledger_names`) fits its columns. A longer one was
        taken: PostgreSQL refused it at the first claim, so every run stopped there (exit 2, after
        reading the carts, on every later run too), MariaDB refused or cut it, SQLite kept it."""
        limits = LEDGER_WIDTHS
        for key, value, column in self.ledger_names():
            if len(value) > limits[column]:
                kept = " with shop.from_email (each run's shop: 'name <from_email>')" if column == "shop" else ""
                raise ValueError(f"{key}: {len(value)} characters{kept}, more than the ledger keeps ({limits[column]})")
        return self

    def ledger_names(self) -> Iterator[tuple[str, str, str]]:
        """``(key path, value, column)`` of each name or value of this config that the ledger keeps
        in the columns named ``column`` (:data:`cartrescue.ledger.CONFIG_VALUES`)."""
        yield "shop.name", self.shop_identity, "shop"
        for tier in self.priority.tiers:
            yield f"{self.priority.key(tier.name)}.name", tier.name, "tier"
        for name, sequence in self.sequences.items():
            yield f"sequences.{name}", name, "sequence"
            for number, step in enumerate(sequence.steps):
                where = f"sequences.{name}.steps[{number}]"
                yield f"{where}.template", step.template, "template"
                yield from ((f"{where}.variants.{variant}", variant, "variant") for variant in step.variants)
        for key, offer in self.code_offers():
            assert offer.codes is not None
            yield f"{key}.codes.pool", offer.codes.pool, "pool"
            yield f"{key}.value", str(offer.value), "value"

    @property
    def phone_region(self) -> str | None:
        """The region a phone number without ``+`` and country code is read in: ``sms.default_region``,
        else the shop's country."""
        return self.sms.default_region or self.shop.country

    def channels_used(self) -> set[str]:
        """Every channel a tier or a step of its sequence can send on."""
        used: set[str] = set()
        for tier in self.priority.tiers:
            for step in self.sequences[tier.sequence].steps:
                used.add(step.channel_for(tier))
        return used

    def own_channel_steps(self, tier: Tier) -> list[int]:
        """The numbers of the steps of ``tier``'s sequence that go out on the tier's own channel:
        the sends its budget counts (a step another channel takes, by ``channel`` or
        ``tier_channels``, uses none)."""
        return [number for number, step in enumerate(self.sequences[tier.sequence].steps, start=1)
                if step.channel_for(tier) == tier.channel]

    @model_validator(mode="after")
    def _incentives_consistent(self) -> "Config":
        tiers = {tier.name for tier in self.priority.tiers}
        pools: dict[str, tuple[str, Incentive]] = {}
        for name, sequence in self.sequences.items():
            for number, step in enumerate(sequence.steps, 1):
                where = f"sequences.{name}.steps[{number - 1}]"
                unknown = sorted(set(step.tier_incentives) - tiers)
                if unknown:
                    raise ValueError(f"{where}.tier_incentives: unknown tier {unknown[0]!r} (known: {', '.join(sorted(tiers))})")
                for incentive in (step.incentive, *step.tier_incentives.values()):
                    if incentive is None or incentive.codes is None:
                        continue
                    seen = pools.setdefault(incentive.codes.pool, (where, incentive))
                    if (seen[1].kind, seen[1].value, seen[1].codes) != (incentive.kind, incentive.value, incentive.codes):
                        raise ValueError(f"{where}: code pool {incentive.codes.pool!r} is used by {seen[0]} with another "
                                         "kind, value or source; one pool is one offer")
        return self

    @model_validator(mode="after")
    def _pool_files_readable(self) -> "Config":
        """Every code pool file, read as a run will read it (relative to the config file): a
        missing or malformed one passed loading, ``doctor`` and ``templates check``, and the first
        delivering run failed every message of its step instead."""
        from cartrescue.pool_file import read_pool_file

        read: set[Path] = set()
        for key, offer in self.code_offers():
            source = offer.codes
            assert source is not None
            if source.file is None or self.path(source.file) in read:
                continue
            try:
                read_pool_file(self.path(source.file))
            except ConfigError as exc:
                raise ValueError(f"{key}.codes.file: {exc}") from None
            read.add(self.path(source.file))
        return self

    def offers(self) -> Iterator[tuple[str, Incentive]]:
        """Each incentive, a step's and its tiers', with its key path
        (``sequences.default.steps[2].incentive``), in the config's order."""
        for name, sequence in self.sequences.items():
            for number, step in enumerate(sequence.steps):
                where = f"sequences.{name}.steps[{number}]"
                offers = [(f"{where}.incentive", step.incentive),
                          *((f"{where}.tier_incentives.{tier}", offer) for tier, offer in step.tier_incentives.items())]
                for key, offer in offers:
                    if offer is not None:
                        yield key, offer

    def code_offers(self) -> Iterator[tuple[str, Incentive]]:
        """Each incentive with per-recipient codes (``codes:`` set), as :meth:`offers` lists them:
        the pools (:func:`cartrescue.compose.incentives.pools`) and the check of their files read
        the same list."""
        return ((key, offer) for key, offer in self.offers() if offer.codes is not None)

    def ignored_keys(self) -> list[str]:
        """A warning line (``file: key: ignored: why``) for each key the file sets, to a value other
        than its default, that nothing reads with this source type and these channels: a
        ``source.delimiter`` on a ``magento2`` source, an ``sms.sender`` while no tier texts. The
        shop believed it took effect. Defaults written out (the config of ``cartrescue init``)
        and secrets (often exported for every shop) are not named."""
        source, lines = self.source, []
        if not source.is_csv:
            why = f"a {source.type} source reads the shop's database (source.url), no CSV file: remove it"
            lines += [(key, why) for key in set_apart(source, "source.", CSV_ONLY)]
            if source.newsletters.file is None:  # the one CSV export a database source may have
                lines += [(key, "no CSV export is read (a database source, no source.newsletters.file): remove it")
                          for key in set_apart(source, "source.", ("export_stale_after",))]
        else:
            why = f"a {source.type} source reads exported files, not a database: remove it"
            lines += [(key, why) for key in set_apart(source, "source.", ("statement_wait",))]
            lines += [(key, why) for key in set_apart(source.newsletters, "source.newsletters.", ("shop_database",))]
        if source.is_csv and source.orders is None:
            why = "source.orders is not set, so no orders export is read: set it, or remove this"
            lines += [(key, why) for key in set_apart(source, "source.", ("orders_encoding", "order_columns"))]
        if source.newsletters.file is None:  # how to read an export that is not named: no newsletter day is kept
            why = "source.newsletters.file is not set, so no newsletter export is read: set it, or remove this"
            lines += [(key, why) for key in set_apart(source.newsletters, "source.newsletters.",
                                                      ("columns", "delimiter", "encoding"))]
        used = self.channels_used()
        for channel, section in (("sms", self.sms), ("webhook", self.webhook)):
            if channel not in used:
                why = f"no tier or step sends by {channel} (remove it, or give a tier or a step channel: {channel})"
                lines += [(key, why) for key in set_apart(section, f"{channel}.", skip=SMS_BEYOND_TEXTS)]
        if "call-list" not in used:
            # forget --files still reads the file for the rows of calls listed before: "remove it" would hide them
            lines += [(key, "no tier or step calls (channel: call-list), so no run adds to the call list; only "
                            "forget reads it, for the rows of calls listed before: give a tier or a step channel: "
                            "call-list, or remove this once that list is done with")
                      for key in set_apart(self.call_list, "call_list.")]
        lines += unread_budget_keys(self.priority, self.own_channel_steps)
        # A free_shipping offer shows no amount and costs report.free_shipping_cost: a value written
        # there (a shipping fee of 10, "free shipping up to 10") was taken, and read by nothing.
        lines += [(f"{key}.value", "a free_shipping incentive shows no amount, and report counts what one costs "
                                   "as report.free_shipping_cost: remove it")
                  for key, offer in self.offers() if offer.kind == "free_shipping" and offer.value != 0]
        lines += [(key, "no command reads it: `run --outbox DIR` (and send-test's) names the folder: remove it")
                  for key in set_apart(self.outbox, "outbox.")]
        if self.smtp.security == "none":
            lines += [(key, "smtp.security is none: no TLS is spoken, so nothing reads it: remove it, or use starttls "
                            "or tls") for key in set_apart(self.smtp, "smtp.", ("ca_file", "verify"))]
        if self.survey.url is None:
            lines += [(key, SURVEY_OFF + (SURVEY_ANSWERS if key != "survey.steps" else ": set survey.url, or "
                                           "remove this")) for key in set_apart(self.survey, "survey.")]
        return [f"{self.where(key)}: ignored: {why}{self.line(key)}" for key, why in lines]

    def pinned_clock(self) -> list[str]:
        """A warning line when the file pins the clock (``now:``): the demo and replays do it on
        purpose, but copied into a shop's cron config it froze every run at that instant, carts
        left after it never came into the window, and each run succeeded sending nothing new."""
        if not self.now:
            return []
        return [f"{self.where('now')}: pins the clock at {self.now}: every run without --now decides as of that "
                "moment, and carts left after it are never reminded (a demo's or a replay's setting: remove it "
                f"for cron){self.line('now')}"]

    def where(self, key: str) -> str:
        """``cartrescue.yaml: shop.from_email`` for an error about ``key`` found after loading."""
        return f"{self.config_file or DEFAULT_CONFIG}: {key}"

    def line(self, key: str) -> str:
        """`` (line N)``, where the file writes ``key`` (or the section holding it), to end an
        error about it found after loading as the errors of loading end; ``""`` where unknown."""
        return line_of(key, self._key_lines)

    def refusal(self, key: str, text: str) -> ConfigError:
        """The error about ``key`` found after loading: ``FILE: key: text (line N)``, as the
        errors of loading read (:meth:`where`, :meth:`line`)."""
        return ConfigError(f"{self.where(key)}: {text}{self.line(key)}")

    def require_env(self, *sections: str) -> None:
        """ConfigError for the first secret of ``sections`` (``smtp``, ``sms``, ``webhook``) whose
        ``${NAME}`` is not set: what a delivery over them needs (:data:`DEFERRED_SECRETS`)."""
        for key, name in self.unset_env.items():
            if key.split(".")[0] in sections:
                raise self.refusal(key, f"environment variable {name} is not set (or is empty)")

    def locate(self, error: ConfigError) -> ConfigError:
        """``error`` with the config file in front when it names a key but not the file
        (checks that run after loading: a CA file, a table prefix, an SMTP address)."""
        message = str(error)
        top = message.split(".", 1)[0].split(":", 1)[0].split(" ", 1)[0]
        if top in type(self).model_fields and not message.startswith(str(self.config_file or DEFAULT_CONFIG)):
            return ConfigError(f"{self.config_file or DEFAULT_CONFIG}: {message}")
        return error

    def outbox_folder(self, outbox: Path | None) -> Path:
        """Where ``--outbox`` writes: its DIR (relative: beside the config), else ``outbox.path``."""
        return self.path(outbox or self.outbox.path or "outbox")

    def path(self, value: Path | str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def shop_identity(self) -> str:
        """The shop a run is for, as its ledger records it (``Ledger.shops_taking_turns``): its
        name and sender, what its customers see. Not the export's path or the database URL: the
        shards of one shop on several hosts (``run --shard``) may read them under other names."""
        return f"{self.shop.name} <{self.shop.from_email}>"

    def open_ledger(self, *, create: bool = True, older: bool = False, upgrade: bool = False,
                    runs_over: "RunsOver | None" = None, reads_a_period: bool = False,
                    limit: float | None = None) -> "Ledger":
        """The ledger of ``ledger.url``; an error that it cannot be opened names the file and key.

        ``create=False`` (a command that only reads: ``carts``, a dry-run, ``preview``, ``report``,
        ``doctor``, the ``list`` commands) writes nothing there, on any database: a SQLite file
        that is not there yet (:meth:`missing_ledger_file`) is not made, empty, at what may be a
        mistyped path, nor one without cartrescue's tables (:meth:`not_a_ledger_file`), nor a
        server database without them, given them; an empty ledger in a temporary folder stands
        in, as for a shop's first run, and says why (:attr:`cartrescue.ledger.Ledger.absent`).
        An older ledger is not upgraded either: it is an error naming what it lacks (exit 2),
        unless ``older`` (``doctor``, which reports :attr:`~cartrescue.ledger.Ledger.behind`) or
        ``upgrade`` (``run`` and ``carts``, a dry-run too: the shop's own job may bring its ledger
        up to date, so a careful owner can dry-run a new version before its first sending run).
        ``runs_over``: the process's runs that are over (:class:`cartrescue.ledger.RunsOver`).
        Each statement waits ``ledger.statement_wait`` for an answer, ``reads_a_period``
        (``report``, whose queries add up weeks of rows) :data:`PERIOD_READS` times as long;
        ``limit`` (``doctor --timeout``) at most (:func:`cartrescue.drivers.within`)."""
        from cartrescue.drivers import within
        from cartrescue.ledger import Ledger, older_ledger

        where = self.where("ledger.url")
        wait, key = within(self.ledger.statement_wait.total_seconds() * (PERIOD_READS if reads_a_period else 1),
                           "ledger.statement_wait", limit)
        if create:
            return Ledger(self.ledger_url, where=where, runs_over=runs_over, statement_wait=wait, wait_key=key,
                          connect_limit=limit)
        missing, foreign = self.missing_ledger_file(), self.not_a_ledger_file()
        if missing is not None:
            return Ledger.empty(where, absent=f"{missing} does not exist")
        if foreign is not None:
            return Ledger.empty(where, absent=f"{foreign[0]} has none of cartrescue's cr_* tables")
        ledger = Ledger(self.ledger_url, where=where, create=False, runs_over=runs_over, statement_wait=wait,
                        wait_key=key, connect_limit=limit)
        if ledger.has_no_tables():
            ledger.close()
            empty = Ledger.empty(where, absent=f"{ledger.safe_url()} has none of cartrescue's cr_* tables")
            empty.refused = ledger.refused
            return empty
        if ledger.behind and upgrade:  # it only adds tables and columns
            ledger.close()
            return Ledger(self.ledger_url, where=where, runs_over=runs_over, statement_wait=wait, wait_key=key,
                          connect_limit=limit)
        if ledger.behind and not older:
            ledger.close()
            raise LedgerError(older_ledger(where, ledger.behind))
        return ledger

    def not_a_ledger_file(self) -> tuple[str, list[str]] | None:
        """``(path, its tables)`` of an existing SQLite file at ``ledger.url`` without a table of
        cartrescue's (``cr_*``): the shop's own database, say, or an empty file. Opened as a
        ledger, it would get cartrescue's tables; a command that records nothing must not write
        into a file ``ledger.url`` may name by mistake. None: another database, no such file, a
        ledger (of any version: opening it brings it up to date), or a file not readable as one."""
        from cartrescue.sqlite_url import sqlite_file, sqlite_tables

        path = sqlite_file(self.ledger_url)
        if path is None or not path.is_file():
            return None
        tables = sqlite_tables(path)
        if tables is None or any(name.startswith("cr_") for name in tables):
            return None
        return str(path), tables

    def missing_ledger_file(self) -> str | None:
        """The path of a SQLite ledger whose file is not there yet, its folder there or not (a
        ``state/`` no run has made: a command that only reads answered it with exit 2 where a
        missing file in an existing folder was "no ledger yet"), else None (another database, or
        the path exists). Whether a run can create it is :func:`cartrescue.ledger.why_no_file`'s."""
        from cartrescue.sqlite_url import sqlite_file

        path = sqlite_file(self.ledger_url)
        if path is None or path.exists():
            return None
        return str(path)

    @property
    def ledger_url(self) -> str:
        return self._beside_config(self.ledger.url)

    @property
    def source_url(self) -> str | None:
        """``source.url`` as the database sources open it: a relative SQLite path beside this
        file, as the ledger's and every other path of it (a ``file:`` URI is SQLite's own)."""
        url = self.source.url
        return url if url is None or url.startswith("sqlite:///file:") else self._beside_config(url)

    def _beside_config(self, url: str) -> str:
        """``url`` with a relative SQLite path made relative to the config file's folder."""
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
            # The folder is a path, the rest is URL text as written: a '?', '#' or '%' in the
            # folder (/srv/Shop #2) is quoted, else SQLAlchemy read it as the URL's query.
            rest, folder = url[len(prefix):], self.base_dir
            if rest.startswith("~"):
                home = Path(rest).expanduser()
                rest, folder = home.name, home.parent
            return _beside(str(folder), rest)
        return url


def _beside(folder: str, rest: str) -> str:
    r"""The SQLite URL of ``rest`` (URL text as written) in ``folder`` (a path).

    A folder name with bytes that are not UTF-8 (unpacked from a Windows zip: ``caf\xe9``, held
    by Python as the surrogate ``\udce9``) cannot be URL text: ``quote`` refused it (exit 70),
    and quoted with its bytes, SQLAlchemy unquoted ``%E9`` to U+FFFD and the ledger opened was a
    new file in another folder. Such a folder goes into a SQLite ``file:`` URI, its bytes quoted
    twice: SQLAlchemy takes one quoting off, SQLite the other, and opens the folder's own bytes.
    The URL itself stays text that every message can print."""
    from urllib.parse import quote

    if not _UNDECODED.search(folder):
        return "sqlite:///" + quote(folder, safe="/") + "/" + rest
    uri = quote(quote(folder, safe="/", errors="surrogateescape"), safe="/")
    return "sqlite:///file:" + uri + "/" + rest + ("&" if "?" in rest else "?") + "uri=true"


_UNDECODED = re.compile("[\udc80-\udcff]")  # a byte of a file name that is not UTF-8 (surrogateescape)
