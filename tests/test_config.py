"""Config: typed, validated, and every error names the file, the key and what was expected."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cartrescue.config import load_config, parse_duration, resolve_now
from cartrescue.errors import ConfigError
from conftest import REPO, cli


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cartrescue.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "value"), [("45m", timedelta(minutes=45)), ("24h", timedelta(hours=24)),
                                             ("3d", timedelta(days=3)), ("90s", timedelta(seconds=90)), (0, timedelta(0))])
def test_durations_read_with_units(text: object, value: timedelta) -> None:
    assert parse_duration(text) == value


def test_a_duration_without_its_unit_is_refused_naming_the_key(tmp_path: Path) -> None:
    # `cutoff: 45` read as seconds would remind a visitor 45 seconds after they left.
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\neligibility: {cutoff: 45}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: eligibility.cutoff: a duration needs its unit: 45m, 45h or 45s?" in str(error.value)


def test_a_duration_of_0_from_an_environment_default_is_taken_as_the_number_0_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pending_within: ${PENDING_WITHIN:-0}`` gives the text "0", which was refused as no duration
    ("expected a duration like 45m, 24h or 3d, got '0'") while ``pending_within: 0`` was taken: the
    README says a duration may be 0, and a ``${SMTP_TIMEOUT:-30}`` reads as 30 already."""
    monkeypatch.delenv("PENDING_WITHIN", raising=False)
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\neligibility:\n  pending_within: ${PENDING_WITHIN:-0}\n")
    assert load_config(path).eligibility.pending_within == timedelta(0)


def test_a_duration_without_its_unit_in_text_is_refused_as_the_bare_number_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cutoff: ${CUTOFF:-45}`` said only "expected a duration like 45m, 24h or 3d, got '45'";
    it says what ``cutoff: 45`` says: minutes, hours or seconds?"""
    monkeypatch.delenv("CUTOFF", raising=False)
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\neligibility:\n  cutoff: ${CUTOFF:-45}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: eligibility.cutoff: a duration needs its unit: 45m, 45h or 45s?" in str(error.value)


def test_a_timeout_without_its_unit_is_seconds(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nsmtp: {timeout: 5, backoff: 0.5}\n"
                            "webhook: {timeout: 7}\n")
    config = load_config(path)
    assert (config.smtp.timeout, config.smtp.backoff) == (timedelta(seconds=5), timedelta(seconds=0.5))
    assert config.webhook.timeout == timedelta(seconds=7)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("source: {type: csv, carts: c.csv}\neligibility: {cutoff: soon}\n",
         "eligibility.cutoff: expected a duration like 45m, 24h or 3d, got 'soon'"),
        ("source: {type: csv, carts: c.csv}\nshop: {timezone: Mars/Base}\n",
         "shop.timezone: expected an IANA timezone name"),
        ("source: {type: csv, carts: c.csv}\neligibility: {colour: red}\n", "eligibility.colour: unknown key"),
        ("source: {type: csv}\n", "source: Value error" if False else "source: a csv source needs 'carts'"),
        ("source: {type: magento2}\n", "a magento2 source needs 'url'"),
        ("source: {type: csv, carts: c.csv}\npriority: {tiers: [{name: a, sequence: nope}]}\n", "unknown sequence 'nope'"),
        ("source: {type: csv, carts: c.csv}\nsequences: {default: {steps: [{delay: 2h, template: a}, {delay: 1h, template: b}]}}\n",
         "sequences.default.steps: step delays must strictly increase"),
        ("source: {type: csv, carts: c.csv}\neligibility: {quiet_hours: {start: '25:00', end: '08:00'}}\n",
         "eligibility.quiet_hours.start: expected a time of day like 21:00"),
        ("source: [unclosed\n", "cartrescue.yaml:2: not valid YAML"),
        ("source: {type: magento2, url: not-a-url}\n", "source.url: expected an SQLAlchemy database URL"),
        ("source: {type: woocommerce, url: 'mysql+pymysql://root@127.0.0.1/shop', options: {orders_table: hpoz}}\n",
         "source.options.orders_table: Input should be 'auto', 'hpos' or 'legacy', got 'hpoz'"),
        ("source: {type: prestashop, url: 'mysql+pymysql://root@127.0.0.1/shop', options: {shop_id: [1]}}\n",
         "source.options.shop_id: not an option of a prestashop source (did you mean shop_ids? its options: "),
        ("source: {type: prestashop, url: 'mysql+pymysql://root@127.0.0.1/shop', options: {shop_ids: '1,2'}}\n",
         "source.options.shop_ids: Input should be a valid integer, unable to parse string as an integer, got '1,2'"),
        ("source: {type: magento2, url: 'mysql+pymysql://root@127.0.0.1/shop', options: {stock_id: default}}\n",
         "source.options.stock_id: Input should be a valid integer"),
        ("source: {type: csv, carts: c.csv, order_columns: {order_id: Number, emial: Email}}\n",
         "source.order_columns: unknown column 'emial' (did you mean email?"),
        ("source: {type: csv, carts: c.csv, columns: {cartid: Id}}\n",
         "source.columns: unknown column 'cartid' (did you mean cart_id?"),
        ("source: {type: csv, carts: c.csv, url: 'postgresql://db/shop'}\n",
         "source.url: for a database source, not a csv one"),
        ("source: {type: csv, carts: c.csv}\neligibility: {cutoff: 1w, max_age: 3d}\n",
         "eligibility: cutoff (7d) must be shorter than max_age (3d)"),
        ("source: {type: csv, carts: c.csv}\neligibility: {max_age: 3d}\n",  # the default sequence's 72h step
         "sequences.default.steps[2].delay: 3d is not shorter than eligibility.max_age (3d)"),
        ("source: {type: csv, carts: c.csv}\nreport: {period: 0d}\n",
         "report.period: must be longer than zero, got 0s"),
        ("source: {type: csv, carts: c.csv}\nreport: {costs: {emial: 0.5}}\n",
         "report.costs: unknown channel 'emial' (did you mean email?)"),
        ("source: {type: csv, carts: c.csv}\nledger: {retention: 12h}\n",
         "ledger.retention.decisions: must be at least 1d (or null: keep for ever), got 12h"),
        ("source: {type: csv, carts: c.csv}\neligibility: {backfill: 2}\n",
         "a bare number is not taken: 2 could mean any of them"),
        ("source: {type: csv, carts: c.csv}\nsurvey: {url: 'https://shop.example.com/s?t={token}', steps: [7]}\n",
         "survey.steps: step 7 is past the last step of every sequence (the longest has 3)"),
        ("source: {type: csv, carts: c.csv}\nshop: {currency: EUO}\n",
         "shop.currency: unknown currency code 'EUO': expected an ISO 4217 code like EUR or SEK"),
        ("source: {type: csv, carts: c.csv}\nshop: {currency: EUR, exchange_rates: {SKE: 0.087}}\n",
         "shop.exchange_rates: unknown currency code 'SKE': expected an ISO 4217 code like EUR or SEK"),
        ("source: {type: csv, carts: c.csv}\nshop: {default_locale: xx_YY}\n",
         "shop.default_locale: unknown locale 'xx_YY': expected a CLDR locale like en, sv or pt_BR"),
        ("source: {type: csv, carts: c.csv}\nshop: {feedback_id: 'my shop:1'}\n",
         "shop.feedback_id: expected a short id of letters, digits, '.', '_' or '-' (up to 40), like myshop, "
         "got 'my shop:1'"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = _write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_an_unquoted_now_is_read_as_the_time_it_says(tmp_path: Path) -> None:
    """YAML reads ``now: 2026-11-20T10:00:00Z`` as a time, which failed as "not a valid string"."""
    config = load_config(_write(tmp_path, "source: {type: csv, carts: c.csv}\nnow: 2026-11-20T10:00:00Z\n"))
    assert resolve_now(config, None) == datetime(2026, 11, 20, 10, tzinfo=timezone.utc)


def test_the_default_locale_is_written_as_cldr_writes_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nshop: {default_locale: pt-br}\n")
    assert load_config(path).shop.default_locale == "pt_BR"


def test_a_missing_environment_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: magento2, url: 'mysql+pymysql://u:${SHOP_DB_PASSWORD}@h/db'}\n")
    with pytest.raises(ConfigError, match=r"source.url: environment variable SHOP_DB_PASSWORD is not set"):
        load_config(path, env={})


def test_environment_variables_are_interpolated_with_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: magento2, url: 'mysql+pymysql://u:${PW}@${HOST:-localhost}/db'}\n")
    assert load_config(path, env={"PW": "s3cret"}).source.url == "mysql+pymysql://u:s3cret@localhost/db"


def test_a_default_may_hold_a_variable_expanded_only_when_taken_as_in_the_shell(tmp_path: Path) -> None:
    """The default was taken up to its first }: the secret became the text ${CARTRESCUE_SECRET},
    which anyone can guess, and every unsubscribe link was signed with it."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n"
                            "shop: {unsubscribe_secret: '${SHOP_SECRET:-${CARTRESCUE_SECRET}}'}\n"
                            "smtp: {host: '${A:-${B:-relay-${C}.example.com}}x'}\n")
    loaded = load_config(path, env={"CARTRESCUE_SECRET": "s" * 32, "C": "7"})
    assert loaded.shop.unsubscribe_secret == "s" * 32 and loaded.smtp.host == "relay-7.example.comx"
    outer = load_config(path, env={"SHOP_SECRET": "o" * 32, "A": "mx.example.com"})  # defaults not taken: not read
    assert (outer.shop.unsubscribe_secret, outer.smtp.host) == ("o" * 32, "mx.example.comx")
    with pytest.raises(ConfigError, match=r"shop\.unsubscribe_secret: environment variable CARTRESCUE_SECRET is not set"):
        load_config(path, env={"C": "7"})


def test_a_default_without_its_closing_brace_is_an_error_not_the_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nsmtp: {host: '${A:-${B}'}\n")
    with pytest.raises(ConfigError, match=r"smtp\.host: '\$\{' that is no variable"):
        load_config(path, env={"B": "x"})


@pytest.mark.parametrize(("section", "key"), [
    ("eligibility", "cutoff: 99999999999999999999d"),
    ("eligibility", "max_age: 999999d"),
    ("ledger", "lock_timeout: 999999d"),
    ("smtp", "timeout: 99999999999999999999"),
    ("report", "attribution_window: 999999d"),
])
def test_a_duration_past_a_century_is_a_config_error_naming_its_key_not_a_crash(
        tmp_path: Path, section: str, key: str) -> None:
    """Dates and timers computed from such values overflowed: exit 70, or a heartbeat thread
    that died with a traceback and left the run without its heartbeat."""
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\n{section}: {{{key}}}\n")
    with pytest.raises(ConfigError, match=rf"{section}\.{key.split(':')[0]}: .*more than 36500 days"):
        load_config(path, env={})


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "source: {type: csv, carts: data/c.csv}\nledger: {url: 'sqlite:///l.db'}\n"))
    assert config.path(config.source.carts) == tmp_path / "data" / "c.csv"  # type: ignore[arg-type]
    assert config.ledger_url == f"sqlite:///{tmp_path / 'l.db'}"


def test_the_example_config_is_valid() -> None:
    config = load_config(REPO / "config.example.yaml", env={})
    assert config.eligibility.cutoff == timedelta(minutes=45)


def test_each_option_the_example_config_leaves_commented_out_loads_when_uncommented(tmp_path: Path) -> None:
    """config.example.yaml offers options as commented-out lines (``# url: …``, ``# now: …``) for a
    shop owner to uncomment; one of them (a PostgreSQL ``ledger.url`` under the SQLite one) made the
    file give ``url`` twice, a config error, when uncommented as offered. Lines that only describe
    a key (``# name: at most 64 characters …``) are prose, not options."""
    import re

    import yaml

    lines = (REPO / "config.example.yaml").read_text(encoding="utf-8").splitlines()
    env = {"SHOP_DB_PASSWORD": "x", "LEDGER_PASSWORD": "x"}
    offered = []
    for number, line in enumerate(lines):
        match = re.fullmatch(r"(\s*)# ([a-z_]+: \S.*)", line)
        if not match:
            continue
        try:
            (value,) = yaml.safe_load(match.group(2)).values()
        except yaml.YAMLError:  # a description of the key, not a value to take
            continue
        if isinstance(value, str) and " " in value:  # a description too
            continue
        offered.append(match.group(2))
        text = "\n".join([*lines[:number], match.group(1) + match.group(2), *lines[number + 1:]]) + "\n"
        section = next(row for row in reversed(lines[:number]) if re.match(r"[a-z_]+:", row))
        if section.startswith("source:"):  # offered for the database types, as their comments say
            text = re.sub(r"(?m)^  type: csv ", "  type: magento2 ", text, count=1)
            text = text.replace("  # url: mysql", "  url: mysql", 1)
        load_config(_write(tmp_path, text), env=env)
    assert len(offered) >= 5, offered  # the ones above are found: the test reads the file it means to


def test_a_config_error_exits_2_with_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\neligibility: {cutoff: soon}\n")
    result = cli("run", "--config", str(path))
    assert result.exit_code == 2 and "eligibility.cutoff" in result.stderr and "Traceback" not in result.output


def test_a_missing_default_config_suggests_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("run")
    assert result.exit_code == 2 and "cartrescue init" in result.stderr


def test_a_missing_default_config_names_the_folder_it_was_looked_for_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cron starts a job in the home folder: a crontab line without `cd /srv/shop &&` was told
    only `cartrescue.yaml: config file not found`, not where it was looked for."""
    monkeypatch.chdir(tmp_path)
    result = cli("run", "--send", "--quiet")
    assert result.exit_code == 2, result.output
    assert f"cartrescue.yaml: config file not found in {tmp_path} (the working folder" in result.stderr, result.stderr
    assert "--config FILE" in result.stderr, result.stderr


def test_init_writes_a_config_and_templates_that_work(tmp_path: Path) -> None:
    assert cli("init", str(tmp_path / "shop")).exit_code == 0
    config = load_config(tmp_path / "shop" / "cartrescue.yaml", env={})
    assert config.source.type == "csv"
    assert (tmp_path / "shop" / "templates" / "en" / "reminder-1.html").is_file()
    assert cli("init", str(tmp_path / "shop")).exit_code == 2  # never overwrites without --force


def test_every_config_key_appears_in_the_example_config() -> None:
    import re
    import typing

    from pydantic import BaseModel

    from cartrescue.config import Config

    text = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    seen: set[type] = set()
    missing: list[str] = []

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            if name in ("base_dir", "config_file", "unset_env"):
                continue
            where = f"{path}.{name}" if path else name
            if not re.search(rf"(^|[\s{{,#-]){re.escape(name)}:", text, re.M):
                missing.append(where)
            for outer in (field.annotation, *typing.get_args(field.annotation)):
                for kind in (outer, *typing.get_args(outer)):
                    if isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in seen:
                        seen.add(kind)
                        walk(kind, where)

    walk(Config, "")
    assert missing == []


def test_a_yaml_alias_bomb_is_refused_with_exit_2(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n" + "\n".join(levels) + "\n")
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2
    assert "YAML aliases" in result.json["error"]["message"] and str(path) in result.json["error"]["message"]


@pytest.mark.parametrize("aliases", [
    # 30 aliases, each naming the one before twice: under the limit on aliases, 2^30 values written out
    "\n".join(["x-a0: &a0 [lol]", *(f"x-a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 31))]),
    "x-r: &r [1, *r]",  # an alias inside its own anchor: no end at all
])
def test_yaml_aliases_that_expand_past_the_limit_are_refused_at_once(tmp_path: Path, aliases: str) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n" + aliases + "\n")
    with pytest.raises(ConfigError, match="YAML aliases expand to more than 100000 values"):
        load_config(path)


def test_yaml_aliases_that_share_a_little_are_fine(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n"
                            "sequences: {default: {steps: &steps [{delay: 1h, template: reminder-1}]}, "
                            "call: {steps: *steps}}\n")
    assert len(load_config(path).sequences["call"].steps) == 1


def test_absurdly_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nx: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(ConfigError, match="nested deeper than 32 levels"):
        load_config(path)


def test_a_few_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nsequences:\n  default:\n    steps:\n"
                            "      - &step {delay: 1h, template: reminder-1}\n      - {<<: *step, delay: 2h}\n")
    assert [s.delay for s in load_config(path).sequences["default"].steps] == [timedelta(hours=1), timedelta(hours=2)]


@pytest.mark.parametrize("yaml_text", [
    "source: {type: magento2, url: 'mysql+pymysql://shop:hunter2secret@db/shop', prefix: 'bad prefix!', colour: 1}\n",
    "source: {type: csv, carts: c.csv}\nsmtp: {username: u, password: hunter2secret, port: 99999}\n",
    "source: {type: csv, carts: c.csv}\nshop: {unsubscribe_secret: hunter2secret, timezone: hunter2secret}\n",
    "source: {type: csv, carts: c.csv}\nsmtp: {password: hunter2secret}\n",
])
def test_no_config_error_shows_a_secret(tmp_path: Path, yaml_text: str) -> None:
    path = _write(tmp_path, yaml_text)
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2
    assert "hunter2secret" not in result.output and str(path) in result.json["error"]["message"]


@pytest.mark.parametrize(("text", "shown"), [
    ("smtp: {port: abc}", "smtp.port: Input should be a valid integer, unable to parse string as an integer (got 'abc')"),
    ("smtp: {port: 99999}", "smtp.port: Input should be less than or equal to 65535 (got 99999)"),
    ("eligibility: {consent: maybe}", "eligibility.consent: Input should be 'required', 'soft-opt-in' or 'none' "
                                      "(got 'maybe')"),
])
def test_a_value_of_the_wrong_type_or_range_is_quoted_in_its_error(tmp_path: Path, text: str, shown: str) -> None:
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\n{text}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: {shown}" in str(error.value)


def test_a_secret_of_the_wrong_type_is_not_quoted(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nsmtp: {password: 4242424242}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "smtp.password" in str(error.value) and "4242424242" not in str(error.value)


@pytest.mark.parametrize(("key", "value"), [("from_email", ""), ("from_email", "shop@"), ("reply_to", "not an address"),
                                            ("from_email", "shop@exa mple.com")])
def test_sender_addresses_are_validated(tmp_path: Path, key: str, value: str) -> None:
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\nshop: {{{key}: '{value}'}}\n")
    with pytest.raises(ConfigError, match=rf"shop\.{key}: not a valid e-mail address"):
        load_config(path)


def test_a_templates_folder_that_does_not_exist_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\ntemplates: my-templates\n")
    with pytest.raises(ConfigError, match="templates: no such folder: .*my-templates"):
        load_config(path)


@pytest.mark.parametrize("mode", [["--outbox", "out"], ["--send"]])
def test_delivering_needs_a_real_unsubscribe_secret(shop: "Shop", mode: list[str]) -> None:  # noqa: F821
    from conftest import cart

    shop.configure(shop={"unsubscribe_secret": ""}).add(cart("c1"))
    result = shop.cli("run", *mode, "--json")
    assert result.exit_code == 2
    assert result.json["error"]["code"] == "config"
    assert "cartrescue.yaml: shop.unsubscribe_secret: empty" in result.json["error"]["message"]
    assert not (shop.folder / "out").exists() or not any((shop.folder / "out").iterdir())


def test_delivering_refuses_a_secret_short_enough_to_guess_from_one_link(shop: "Shop") -> None:  # noqa: F821
    from conftest import cart

    shop.configure(shop={"unsubscribe_secret": "x"}).add(cart("c1"))
    result = shop.cli("run", "--outbox", "out", "--json")
    assert result.exit_code == 2
    assert "shop.unsubscribe_secret: 1 characters, at least 16 needed" in result.json["error"]["message"]
    assert not (shop.folder / "out").exists() or not any((shop.folder / "out").iterdir())


def test_a_dry_run_needs_no_secret(shop: "Shop") -> None:  # noqa: F821
    from conftest import cart

    shop.configure(shop={"unsubscribe_secret": ""}).add(cart("c1"))
    assert shop.cli("run", "--json").exit_code == 0


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    # Two `shop:` sections: YAML keeps the last one without a word; the shop would lose half its settings.
    path = _write(tmp_path, "shop: {name: A}\nsource: {type: csv, carts: c.csv}\nshop:\n  timezone: UTC\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (f"{path}:3: 'shop' is given twice in one mapping (first on line 1): YAML would "
                                "silently keep the last; remove one")


def test_keys_a_merge_brings_may_be_overridden(tmp_path: Path) -> None:
    from cartrescue.config import safe_yaml

    text = "relay: &relay {host: relay.example.com, port: 25}\nsmtp:\n  <<: *relay\n  port: 587\n"
    assert safe_yaml(text, tmp_path / "cartrescue.yaml")["smtp"] == {"host": "relay.example.com", "port": 587}


def _relay_password_unset(shop: "Shop", monkeypatch: pytest.MonkeyPatch) -> "Shop":  # noqa: F821
    from conftest import cart

    monkeypatch.delenv("CR_TEST_SMTP_PASSWORD", raising=False)
    return shop.configure(smtp={"host": "127.0.0.1", "port": 2525, "username": "shop",
                                "password": "${CR_TEST_SMTP_PASSWORD}"}).add(cart("c1"))


def test_commands_that_deliver_nothing_run_without_the_relays_password(
        shop: "Shop", monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F821
    """CI runs `templates check` without the shop's secrets; a dry-run, `carts` and `report` need none either."""
    _relay_password_unset(shop, monkeypatch)
    junit = shop.folder / "templates.xml"
    assert shop.cli("templates", "check", "--quick", "--junit", str(junit), now=None).exit_code == 0 and junit.exists()
    for command in (["run", "--json"], ["carts", "--json"], ["report", "--json"]):
        assert shop.cli(*command).exit_code == 0, command


def test_a_relay_password_set_but_empty_is_needed_only_by_what_delivers(
        shop: "Shop", monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F821
    """``SMTP_PASSWORD=`` in a crontab stopped every command, a dry-run and `templates check`
    too ("a username without a password"): it is taken as unset, as ``${SMTP_PASSWORD}`` is."""
    _relay_password_unset(shop, monkeypatch)
    monkeypatch.setenv("CR_TEST_SMTP_PASSWORD", "")
    assert shop.cli("run", "--json").exit_code == 0
    result = shop.cli("run", "--send", "--json")
    assert result.exit_code == 2 and "smtp.password: environment variable CR_TEST_SMTP_PASSWORD is not set" in \
        result.json["error"]["message"]
    assert shop.messages() == []


def test_a_sending_run_names_the_relays_unset_password_before_anything_is_claimed(
        shop: "Shop", monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F821
    _relay_password_unset(shop, monkeypatch)
    result = shop.cli("run", "--send", "--json")
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"].endswith(
        "cartrescue.yaml: smtp.password: environment variable CR_TEST_SMTP_PASSWORD is not set (or is empty) (line 24)")
    assert shop.messages() == []
    doctor = shop.cli("doctor", "--json", now=None)
    smtp = {check["name"]: check for check in doctor.json["checks"]}["smtp"]
    assert smtp["status"] == "fail" and "CR_TEST_SMTP_PASSWORD is not set" in smtp["detail"]
    assert "CR_TEST_SMTP_PASSWORD is not set" in shop.cli("send-test", "me@example.com", "--json").json["error"]["message"]


def test_a_variable_without_its_closing_brace_is_an_error_not_the_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nsmtp: {username: u, password: '${SMTP_PASSWORD'}\n")
    with pytest.raises(ConfigError, match=r"smtp\.password: '\$\{' that is no variable \(no name, or no closing"):
        load_config(path, env={"SMTP_PASSWORD": "x"})


def test_database_options_are_read_by_their_type(tmp_path: Path) -> None:
    """gdpr_consent from a ${VAR} is the text "false", which was true (consent assumed); one
    status given as text became a list of its letters (every cart dropped without a word)."""
    path = _write(tmp_path, "source: {type: woocommerce, url: 'mysql+pymysql://root@127.0.0.1/shop', "
                            "options: {gdpr_consent: 'false', statuses: abandoned, line_prices_include_tax: 'yes'}}\n")
    assert load_config(path).source.options == {"gdpr_consent": False, "statuses": ["abandoned"],
                                                 "line_prices_include_tax": True}
    path = _write(tmp_path, "source: {type: prestashop, url: 'mysql+pymysql://root@127.0.0.1/shop', "
                            "options: {shop_ids: 1}}\n")
    assert load_config(path).source.options == {"shop_ids": [1]}


@pytest.mark.parametrize(("section", "key", "value", "shown"), [
    ("smtp", "timeout", "0", "0s"), ("smtp", "timeout", "-5", "-5s"), ("smtp", "data_timeout", "0", "0s"),
    ("smtp", "data_timeout", "0s", "0s"), ("smtp", "backoff", "-1", "-1s"), ("webhook", "timeout", "0", "0s"),
    ("sms", "timeout", "-2", "-2s"), ("sms", "backoff", "-1", "-1s"),
])
def test_a_timeout_of_zero_or_less_or_a_negative_backoff_is_refused_naming_the_key(
        tmp_path: Path, section: str, key: str, value: str, shown: str) -> None:
    """``data_timeout: 0`` was taken, and every message then ended ``unconfirmed`` (never resent)."""
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\n{section}: {{{key}: {value}}}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: {section}.{key}: " in str(error.value) and f"got {shown}" in str(error.value)


def test_a_backoff_of_zero_retries_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nsmtp: {backoff: 0, backoff_max: 0}\n")
    assert load_config(path).smtp.backoff == timedelta(0)


@pytest.mark.parametrize(("written", "shown"), [("25:00", "25:00"), ("24:00", "24:00"), ("21:00:00", "21:00:00"),
                                                ("21", "21")])
def test_an_unquoted_time_of_day_yaml_reads_as_a_number_is_refused_unless_it_is_one(
        tmp_path: Path, written: str, shown: str) -> None:
    """Unquoted, YAML reads ``25:00`` as 1500 minutes: it was taken as 01:00 (``21:00:00`` as
    12:00, ``21`` as 00:21), quiet hours the shop never wrote, while '25:00' quoted was refused."""
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\n"
                            f"eligibility: {{quiet_hours: {{start: {written}, end: '08:00'}}}}\n")
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2
    assert result.json["error"]["message"] == (f"{path}: eligibility.quiet_hours.start: expected a time of day "
                                               f"like 21:00, got {shown} (line 2)")


def test_an_unquoted_time_of_day_is_read_as_written(tmp_path: Path) -> None:
    from datetime import time

    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\neligibility: {quiet_hours: {start: 21:30, end: 8:05}}\n")
    quiet = load_config(path).eligibility.quiet_hours
    assert quiet is not None and (quiet.start, quiet.end) == (time(21, 30), time(8, 5))


def test_a_default_stands_for_a_variable_set_but_empty_as_in_the_shell(tmp_path: Path) -> None:
    """``SMTP_HOST=`` in a crontab: ``${SMTP_HOST:-relay.example.com}`` is the default in the shell,
    and was an empty host here."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n"
                            "smtp: {host: '${SMTP_HOST:-relay.example.com}', helo_name: '${HELO:-}'}\n")
    config = load_config(path, env={"SMTP_HOST": "", "HELO": ""})
    assert (config.smtp.host, config.smtp.helo_name) == ("relay.example.com", "")
    assert load_config(path, env={"SMTP_HOST": "mx.example.com"}).smtp.host == "mx.example.com"


@pytest.mark.parametrize(("text", "shown"), [
    ("eligiblity: {cutoff: 1h}",
     "eligiblity: unknown key (did you mean eligibility? see config.example.yaml) (line 2)"),
    ("eligibility: {cut_off: 1h}",
     "eligibility.cut_off: unknown key (did you mean cutoff? see config.example.yaml) (line 2)"),
    ("priority: {tiers: [{name: a}, {name: b, min_score: 50, bugdet: 5}]}",
     "priority.tiers[1].bugdet: unknown key (did you mean budget? see config.example.yaml) (line 2)"),
    ("sequences: {default: {steps: [{delay: 1h, template: reminder-1, incentive: {kind: percent, value: 5, valid: 2d}}]}}",
     "sequences.default.steps[0].incentive.valid: unknown key (did you mean valid_for? see config.example.yaml) "
     "(line 2)"),
    ("eligibility: {colour: red}",
     "eligibility.colour: unknown key (check the spelling; see config.example.yaml) (line 2)"),
])
def test_an_unknown_key_names_the_known_one_it_is_near(tmp_path: Path, text: str, shown: str) -> None:
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\n{text}\n")
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2
    assert result.json["error"]["message"] == f"{path}: {shown}"


@pytest.mark.parametrize("key", ["base_dir: /elsewhere", "config_file: other.yaml", "unset_env: {}"])
def test_the_keys_cartrescue_sets_itself_are_unknown_keys_of_the_file(tmp_path: Path, key: str) -> None:
    """``base_dir: /srv/shop`` was accepted and replaced by the config's own folder, unnoticed. The
    refusal ends with the key's line, as every other unknown key's does (it named none)."""
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\n{key}\n")
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2
    assert result.json["error"]["message"] == (f"{path}: {key.split(':')[0]}: unknown key (check the spelling; "
                                               "see config.example.yaml) (line 2)")


@pytest.mark.parametrize(("tiers", "shown"), [
    ("[{name: low, min_score: 0}, {name: top, min_score: 50, sequence: nope}]",
     "priority.tiers[1].sequence: unknown sequence 'nope' (known: default) (line 2)"),
    ("[{name: low, min_score: 0}, {name: top, min_score: 50}, {name: low, min_score: 20}]",
     "priority.tiers[2].name: 'low' is the name of tiers[0] too: tier names must be unique (line 2)"),
    ("[{name: low, min_score: 0}, {name: top, min_score: 50, over_budget: email}]",
     "priority.tiers[1].over_budget: email needs a budget (tier 'top') (line 2)"),
])
def test_an_error_about_a_tier_names_it_by_its_index_in_the_file(tmp_path: Path, tiers: str, shown: str) -> None:
    """Tiers are sorted highest first once read: an unknown sequence was at ``priority.tiers[top]``,
    a key no file has; a repeated name, or over_budget without a budget, named no tier's key."""
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\npriority: {{tiers: {tiers}}}\n")
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2
    assert result.json["error"]["message"] == f"{path}: {shown}"


def test_tiers_are_still_matched_highest_first(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n"
                            "priority: {tiers: [{name: low, min_score: 0}, {name: top, min_score: 50}]}\n")
    assert [tier.name for tier in load_config(path).priority.tiers] == ["top", "low"]


def test_norwegian_written_unquoted_is_the_locale_no(tmp_path: Path) -> None:
    """YAML 1.1 reads an unquoted ``no`` as false: ``default_locale: no`` was "not a valid string"
    and ``words: {no: ...}`` an error at ``survey.words[0].[key]``, as ``country: NO`` is not."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nshop: {default_locale: no}\n"
                            "survey: {words: {no: {price: Prisen}}}\n")
    config = load_config(path)
    assert (config.shop.default_locale, config.survey.words) == ("no", {"no": {"price": "Prisen"}})


@pytest.mark.parametrize(("text", "shown"), [
    ("sequences: {default: {steps: [{delay: 1h, template: reminder-1, tier_channels: {yes: sms}}]}}",
     "sequences.default.steps[0].tier_channels: key true: YAML reads an unquoted yes, no, on or off as true or "
     "false: quote the key (line 2)"),
    ("sequences: {1: {steps: [{delay: 1h, template: reminder-1}]}}", "sequences: key 1 is not text: quote it (\"1\") (line 2)"),
    ("smtp: {2: x}", "smtp: key 2 is not text: quote it (\"2\") (line 2)"),
    ("on: {}", "key true: YAML reads an unquoted yes, no, on or off as true or false: quote the key"),
])
def test_a_key_yaml_reads_as_a_number_or_a_boolean_is_named_where_it_stands(
        tmp_path: Path, text: str, shown: str) -> None:
    """Such a key was named as a list index, ``sequences[1].[key]``, a key no file has."""
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\n{text}\n")
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2
    assert result.json["error"]["message"] == f"{path}: {shown}"


@pytest.mark.parametrize(("text", "shown"), [
    ("shop:\n  # name: My Shop", "shop: expected a mapping of keys (key: value), got null (line 2)"),
    ("smtp: [relay.example.com]", "smtp: expected a mapping of keys (key: value) (got a list) (line 2)"),
    ("priority: {tiers: null}", "priority.tiers: Input should be a valid list, got null (line 2)"),
])
def test_a_section_that_is_not_a_mapping_says_so_not_its_class(tmp_path: Path, text: str, shown: str) -> None:
    """``shop:`` with every key under it commented out is null: the error said "Input should be a
    valid dictionary or instance of ShopConfig", a class of cartrescue's code, not of the file."""
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\n{text}\n")
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2
    assert result.json["error"]["message"] == f"{path}: {shown}"


def test_a_database_sources_currency_option_is_checked_when_the_config_loads(tmp_path: Path) -> None:
    """A misspelt currency option stopped every run as the shop's fault (exit 3: "the shop's
    currency (woocommerce_currency option) is unusable ... set source.options.currency"), and was
    not looked at before the shop's database answered."""
    path = _write(tmp_path, "source: {type: woocommerce, url: 'mysql+pymysql://shop@127.0.0.1:1/shop', "
                            "options: {currency: EUO}}\n")
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"] == (f"{path}: source.options.currency: unknown currency code 'EUO': "
                                               "expected an ISO 4217 code like EUR or SEK (line 1)")


def test_a_woocommerce_users_prefix_that_is_no_table_prefix_is_a_config_error(tmp_path: Path) -> None:
    """It goes into the SQL text as part of a table's name, as ``source.prefix`` does."""
    path = _write(tmp_path, "source: {type: woocommerce, url: 'mysql+pymysql://shop@127.0.0.1:1/shop', "
                            "prefix: wp_2_, options: {users_prefix: 'wp; DROP'}}\n")
    result = cli("carts", "--config", str(path), "--json")
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"] == (f"{path}: source.options.users_prefix: only letters, digits and _ "
                                               "are allowed, got 'wp; DROP' (line 1)")


def test_a_database_sources_timezone_option_fails_doctors_config_check_naming_the_file(tmp_path: Path) -> None:
    """It was found only by the source check, as ``source.options.timezone: ...`` without the file."""
    path = _write(tmp_path, "source: {type: sql, url: 'mysql+pymysql://shop@127.0.0.1:1/shop', queries: {carts: x}, "
                            "options: {db_timezone: Europe/Stokholm}}\n")
    checks = {check["name"]: check for check in cli("doctor", "--config", str(path), "--json").json["checks"]}
    assert checks["config"]["status"] == "fail"
    assert checks["config"]["detail"] == (f"{path}: source.options.db_timezone: expected an IANA timezone name like "
                                          "Europe/Stockholm, got 'Europe/Stokholm' (line 1)")


def test_a_timeout_from_an_environment_variable_without_its_unit_is_seconds(tmp_path: Path) -> None:
    """Interpolation gives text: ``timeout: ${SMTP_TIMEOUT:-30}`` was "expected a duration like 45m,
    24h or 3d, got '30'", while ``timeout: 30`` is 30 seconds."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n"
                            "smtp: {timeout: '${SMTP_TIMEOUT:-30}', backoff: '${SMTP_BACKOFF}'}\n")
    config = load_config(path, env={"SMTP_BACKOFF": "0.5"})
    assert (config.smtp.timeout, config.smtp.backoff) == (timedelta(seconds=30), timedelta(seconds=0.5))


def test_a_backfill_of_zero_is_refused_naming_the_key(shop: "Shop") -> None:  # noqa: F821
    """Every cart was skipped as outside_backfill, by every run, without a word from the config."""
    from conftest import cart

    shop.configure(eligibility={"backfill": "0s"}).add(cart("c1"))
    result = shop.cli("run", "--outbox", "out", "--json")
    assert result.exit_code == 2
    assert result.json["error"]["message"] == (
        f"{shop.config_path}: eligibility.backfill: must be longer than zero, got 0s (no sequence would ever start: "
        "step 1 has come due before a run sees it) (line 16)")
    assert not (shop.folder / "out").exists() or not any((shop.folder / "out").iterdir())


@pytest.mark.parametrize("weight", [".inf", ".nan"])
def test_a_variant_weight_that_is_no_finite_number_is_refused_naming_the_key(tmp_path: Path, weight: str) -> None:
    """``.inf`` took every customer into the last arm and ``.nan`` none: no test at all."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nsequences:\n  default:\n    steps:\n"
                            f"      - {{delay: 1h, template: reminder-1, variants: {{a: 1, b: {weight}}}}}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "sequences.default.steps[0].variants" in str(error.value) and "'b'" in str(error.value)


@pytest.mark.parametrize("weight", [".inf", ".nan", "1e308", "-1e308"])
def test_a_rule_weight_that_is_no_finite_number_is_refused_naming_the_key(tmp_path: Path, weight: str) -> None:
    """``.nan`` made every cart's score NaN, which no tier's min_score matches; two weights of
    1e308 summed to a score of infinity, ``Infinity`` in ``--json``, which is no JSON."""
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\npriority: {{rules: {{high_value: {{weight: {weight}}}}}}}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "priority.rules.high_value.weight" in str(error.value)


@pytest.mark.parametrize("floor", [".nan", ".inf", "-.inf"])
def test_a_tier_min_score_that_is_no_finite_number_is_refused_naming_the_key(tmp_path: Path, floor: str) -> None:
    """``min_score: .nan`` stopped every command with "internal error: StopIteration" (exit 70):
    NaN equals no tier's min_score, its own neither; ``.inf`` was a tier no cart ever reached."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n"
                            f"priority: {{tiers: [{{name: top, min_score: {floor}}}, {{name: rest, min_score: 0}}]}}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "priority.tiers[0].min_score" in str(error.value)


@pytest.mark.parametrize("name", ['""', "'  '"])
def test_a_tier_without_a_name_is_refused_naming_the_key(tmp_path: Path, name: str) -> None:
    """A tier named "" was taken: its carts showed "–" in the report, and ``tier == ...`` in a
    template, a tier's budget and the call list could not name it."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n"
                            f"priority: {{tiers: [{{name: top, min_score: 50}}, {{name: {name}, min_score: 0}}]}}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "priority.tiers[1].name" in str(error.value)


def test_quiet_hours_that_start_and_end_at_one_time_are_refused_naming_the_key(tmp_path: Path) -> None:
    """Read as an empty window they meant no quiet hours at all, where a shop may have meant all day."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n"
                            "eligibility: {quiet_hours: {start: '21:00', end: '21:00'}}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "eligibility.quiet_hours.end: the same time as start (21:00)" in str(error.value)


def test_a_tab_that_indents_a_key_says_yaml_indents_with_spaces(tmp_path: Path) -> None:
    """PyYAML's "found character '\\t' that cannot start any token" told a shop owner nothing."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\neligibility:\n\tcutoff: 45m\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (f"{path}:3: not valid YAML: a tab character: YAML indents with spaces, "
                                "never tabs (replace it with spaces)")


@pytest.mark.parametrize(("text", "shown"), [
    ("eligibility:\n  max_age: 7d\n  cutof: 45m\n", "eligibility.cutof: unknown key (did you mean cutoff? see "
                                                    "config.example.yaml) (line 4)"),
    ("priority:\n  tiers:\n    - {name: a, min_score: 0}\n    - name: b\n      min_score: 1\n      budget: ten\n",
     "priority.tiers[1].budget: Input should be a valid integer, unable to parse string as an integer (got 'ten') "
     "(line 7)"),
    ("eligibility:\n  cutoff: 45\n", "eligibility.cutoff: a duration needs its unit: 45m, 45h or 45s? (a bare "
                                     "number is not taken: 45 could mean any of them) (line 3)"),
])
def test_an_error_about_a_key_names_the_line_it_stands_on(tmp_path: Path, text: str, shown: str) -> None:
    """In a 260-line config the key path alone left a shop owner counting tiers and steps."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n" + text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: {shown}"


def test_an_unset_environment_variable_names_the_line_of_its_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nsmtp:\n  port: 25\n  host: ${RELAY_HOST}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert str(error.value) == f"{path}: smtp.host: environment variable RELAY_HOST is not set (line 4)"


@pytest.mark.parametrize(("text", "shown"), [
    ("cutoff: 45m", "cutoff: unknown key (did you mean eligibility.cutoff? see config.example.yaml) (line 2)"),
    ("shop: {host: relay.example.com}",
     "shop.host: unknown key (did you mean smtp.host? see config.example.yaml) (line 2)"),
    ("eligibility: {timeout: 5s}", "eligibility.timeout: unknown key (did you mean smtp.timeout, webhook.timeout or "
                                   "sms.timeout? see config.example.yaml) (line 2)"),
])
def test_a_key_written_in_the_wrong_section_names_where_it_belongs(tmp_path: Path, text: str, shown: str) -> None:
    """``cutoff: 45m`` at the top level, not indented under ``eligibility:``, was "check the spelling"
    of a key spelt right."""
    path = _write(tmp_path, f"source: {{type: csv, carts: c.csv}}\n{text}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: {shown}"


@pytest.mark.parametrize(("text", "shown"), [
    ("shop:\n  name: \"Bob's\n  url: x\n",
     "cartrescue.yaml:5: not valid YAML: found unexpected end of stream (while scanning a quoted scalar, from line 3)"),
    ("eligibility:\n  cutoff 45m\n  max_age: 7d\n",
     "cartrescue.yaml:4: not valid YAML: mapping values are not allowed here (a key on a line above without ':', "
     "or this key indented deeper than the one before it?)"),
])
def test_a_yaml_error_says_where_what_it_could_not_read_began(tmp_path: Path, text: str, shown: str) -> None:
    """An unclosed quote was "found unexpected end of stream" at the file's last line, far from the
    quote; a key without its ':' was named on the line after it."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\n" + text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{tmp_path}/{shown}"


def test_a_yes_or_no_where_a_word_is_expected_says_yaml_read_it_as_true_or_false(tmp_path: Path) -> None:
    """``consent: no`` (meant: none) was "Input should be 'required', 'soft-opt-in' or 'none' (got False)"."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\neligibility:\n  consent: no\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (f"{path}: eligibility.consent: Input should be 'required', 'soft-opt-in' or 'none' "
                                "(got false: YAML reads an unquoted yes, no, on or off as true or false) (line 3)")


def test_a_ledger_url_that_is_a_bare_path_is_refused_naming_the_url_it_needs(tmp_path: Path) -> None:
    """``url: cartrescue.db`` was "ledger.url (unparsable URL): cannot open: Could not parse SQLAlchemy
    URL from given URL string", with no word of the ``sqlite:///`` it lacked."""
    path = _write(tmp_path, "source: {type: csv, carts: c.csv}\nledger:\n  url: cartrescue.db\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (f"{path}: ledger.url: expected an SQLAlchemy database URL like sqlite:///cartrescue.db "
                                "(a file beside this config) or postgresql+psycopg://user@host/cartrescue (line 3)")


@pytest.mark.parametrize(("key", "text"), [
    ("ledger", "source: {type: csv, carts: c.csv}\nledger:\n  url: 'postgresql+psycopg://u:S3cretPw@db.example.com:notaport/x'\n"),
    ("source", "source:\n  type: magento2\n  url: 'postgresql+psycopg://u:S3cretPw@db.example.com:notaport/shop'\n"),
])
def test_a_database_url_whose_port_is_not_a_number_is_a_config_error_without_its_password(
        tmp_path: Path, key: str, text: str) -> None:
    """``...@db.example.com:notaport/shop`` stopped every command as "internal error: ValueError:
    invalid literal for int()" (exit 70, "a bug in cartrescue"): a typo in the config, not a bug."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: {key}.url: its port is not a number" in str(error.value)
    assert "S3cretPw" not in str(error.value)


def test_a_password_with_an_unencoded_at_sign_is_a_config_error_that_shows_no_part_of_it(tmp_path: Path) -> None:
    """``u:S3cret@Pw@host`` was read as the password ``S3cret`` at the host ``Pw@host``: every
    error then named that host ("cannot connect ... at Pw@host"), a piece of the password."""
    path = _write(tmp_path, "source:\n  type: magento2\n  url: 'mysql+pymysql://u:S3cret@Pw@db.example.com/shop'\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: source.url: an @ in the user name or password must be written %40" in str(error.value)
    assert "Pw" not in str(error.value).replace(str(path), "")


@pytest.mark.parametrize(("url", "said"), [
    ("postgresql+psycopg://u:pass@word@db.example.com/shop",
     "an @ in the user name or password must be written %40 (the part after it was read as the host name)"),
    ("mysql+pymysql://u:p@ss:w/rd%x@db.example.com/shop",
     "its port is not a number (an @, :, / or # in the user name or password must be written %40, %3A, %2F or %23)"),
])
def test_a_password_piece_is_not_masked_inside_the_words_of_the_line_that_says_how_to_write_it(
        tmp_path: Path, url: str, said: str) -> None:
    """The piece of a password before an unencoded @ (``p``, ``pass``) was masked wherever it
    stood, inside words too: "its ***ort is not a number (… user name or ***assword must be …)"."""
    path = _write(tmp_path, f"source:\n  type: sql\n  url: '{url}'\n  queries: {{carts: SELECT 1}}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: source.url: {said}" in str(error.value)
    assert "***" not in str(error.value) and "ss:w" not in str(error.value) and "word@" not in str(error.value)
