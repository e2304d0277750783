"""Keys the config sets that nothing reads: each is a warning naming the file and the key.

A shop that wrote ``source.delimiter: ";"`` on a ``magento2`` source, or an SMS sender while no
tier texts, believed the setting took effect; it was silently ignored. Only values other than the
default count, so the full config of ``cartrescue init`` (every key written out) stays quiet.
"""

from __future__ import annotations

from pathlib import Path

from cartrescue.config import load_config
from conftest import Shop, cli

#: The default tiers call their top slice (vip: call-list); these do not.
EMAIL_ONLY = "priority: {tiers: [{name: all, min_score: 0}]}\n"
DATABASE = "source: {type: magento2, url: 'mysql+pymysql://shop@127.0.0.1:1/shop'"


def _ignored(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "cartrescue.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={}).ignored_keys()


def test_csv_keys_on_a_database_source_are_named_as_ignored(tmp_path: Path) -> None:
    lines = _ignored(tmp_path, DATABASE + ", delimiter: ';', orders_encoding: cp1252, carts: carts.csv}\n")
    path = tmp_path / "cartrescue.yaml"
    assert [line.split(": ignored")[0] for line in lines] == [
        f"{path}: source.carts", f"{path}: source.delimiter", f"{path}: source.orders_encoding"]
    assert "a magento2 source reads the shop's database (source.url), no CSV file" in lines[0]


def test_csv_keys_written_with_their_defaults_on_a_database_source_are_quiet(tmp_path: Path) -> None:
    assert _ignored(tmp_path, DATABASE + ", delimiter: null, encoding: utf-8-sig, orders_encoding: null, "
                              "columns: {}}\n") == []


def test_export_stale_after_on_a_database_source_without_a_newsletters_file_is_named_as_ignored(
        tmp_path: Path) -> None:
    lines = _ignored(tmp_path, DATABASE + ", export_stale_after: 2d}\n")
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'cartrescue.yaml'}: source.export_stale_after: ignored")
    assert _ignored(tmp_path, DATABASE + ", export_stale_after: 2d, newsletters: {file: sends.csv}}\n") == []


def test_the_orders_encoding_without_an_orders_file_is_named_as_ignored(tmp_path: Path) -> None:
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv, orders_encoding: cp1252}\n")
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'cartrescue.yaml'}: source.orders_encoding: ignored")
    assert "source.orders" in lines[0]


def test_newsletter_export_settings_without_its_file_are_named_as_ignored(tmp_path: Path) -> None:
    """``newsletters: {columns: {...}, delimiter: ";"}`` without ``file:`` read no export, and no
    run said so: the shop believed its newsletter days were kept, and reminders went out on them."""
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv, newsletters: {columns: {email: Address}, "
                               "delimiter: ';', encoding: cp1252}}\n")
    path = tmp_path / "cartrescue.yaml"
    assert [line.split(": ignored")[0] for line in lines] == [
        f"{path}: source.newsletters.columns", f"{path}: source.newsletters.delimiter",
        f"{path}: source.newsletters.encoding"]
    assert all("source.newsletters.file is not set" in line for line in lines)
    assert _ignored(tmp_path, "source: {type: csv, carts: c.csv, newsletters: {file: sends.csv, "
                              "columns: {email: Address}, delimiter: ';'}}\n") == []


def test_sms_settings_while_no_tier_texts_are_named_as_ignored(tmp_path: Path) -> None:
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv}\nsms: {sender: MyShop, twilio: {account_sid: AC1}}\n")
    path = tmp_path / "cartrescue.yaml"
    assert [line.split(": ignored")[0] for line in lines] == [f"{path}: sms.sender", f"{path}: sms.twilio.account_sid"]
    assert "no tier or step sends by sms" in lines[0]


def test_an_ignored_key_names_the_line_it_stands_on(tmp_path: Path) -> None:
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv}\nsms:\n  provider: twilio\n  sender: MyShop\n")
    assert lines == [f"{tmp_path / 'cartrescue.yaml'}: sms.sender: ignored: no tier or step sends by sms (remove it, "
                     "or give a tier or a step channel: sms) (line 4)"]


def test_sms_settings_are_quiet_once_a_tier_texts(tmp_path: Path) -> None:
    assert _ignored(tmp_path, "source: {type: csv, carts: c.csv}\nsms: {sender: MyShop, twilio: {account_sid: AC1}}\n"
                              "priority: {tiers: [{name: all, min_score: 0, channel: sms}]}\n") == []


def test_sms_settings_that_serve_more_than_texts_sent_are_quiet(tmp_path: Path) -> None:
    """The region reads every phone number; inbound replies (STOP) still come after the last text."""
    assert _ignored(tmp_path, "source: {type: csv, carts: c.csv}\nsms: {default_region: SE, countries: [SE], "
                              "inbound_url: 'https://shop.example.com/in', http: {inbound_from: sender}}\n") == []


def test_webhook_settings_while_no_tier_posts_are_named_as_ignored(tmp_path: Path) -> None:
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv}\nwebhook: {url: 'https://hooks.example.com/x'}\n")
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'cartrescue.yaml'}: webhook.url: ignored")


def test_survey_settings_without_a_survey_url_are_named_as_ignored(tmp_path: Path) -> None:
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv}\nsurvey: {reasons: [price, other], steps: [2]}\n")
    path = tmp_path / "cartrescue.yaml"
    assert [line.split(": ignored")[0] for line in lines] == [f"{path}: survey.reasons", f"{path}: survey.steps"]
    assert all("survey.url is not set, so no message asks" in line for line in lines)


def test_a_survey_setting_that_answers_to_earlier_messages_still_read_says_so(tmp_path: Path) -> None:
    """Links sent while survey.url was set are still answered (their page, survey export's labels,
    answered_survey): a survey switched off keeps reading its reasons, words, free_text and
    stops_sequence for them. Only survey.steps serves nothing but the messages that ask."""
    reasons, steps = _ignored(tmp_path, "source: {type: csv, carts: c.csv}\nsurvey: {reasons: [price, other], "
                                        "steps: [2]}\n")
    assert "only the answers to links of earlier messages read it" in reasons
    assert "earlier messages" not in steps


def test_survey_settings_are_quiet_once_the_survey_has_a_url(tmp_path: Path) -> None:
    assert _ignored(tmp_path, "source: {type: csv, carts: c.csv}\nsurvey: {url: 'https://shop.example.com/s?t={token}', "
                              "reasons: [price, other], steps: [2], free_text: false}\n") == []


def test_the_call_list_path_while_no_tier_calls_is_named_as_ignored(tmp_path: Path) -> None:
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv}\ncall_list: {path: calls/today.csv}\n" + EMAIL_ONLY)
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'cartrescue.yaml'}: call_list.path: ignored")
    assert "no tier or step calls (channel: call-list)" in lines[0]
    assert "forget" in lines[0]  # forget still reads the file for the rows of calls listed before


def test_the_call_list_path_is_quiet_once_a_tier_or_a_step_calls(tmp_path: Path) -> None:
    assert _ignored(tmp_path, "source: {type: csv, carts: c.csv}\ncall_list: {path: calls/today.csv}\n"
                              "priority: {tiers: [{name: all, min_score: 0, channel: call-list}]}\n") == []
    assert _ignored(tmp_path, "source: {type: csv, carts: c.csv}\ncall_list: {path: calls/today.csv}\n" + EMAIL_ONLY
                    + "sequences: {default: {steps: [{delay: 1h, template: reminder-1, channel: call-list}]}}\n") == []


def test_the_config_init_writes_names_nothing_as_ignored(tmp_path: Path) -> None:
    assert cli("init", str(tmp_path / "shop")).exit_code == 0
    written = (tmp_path / "shop" / "cartrescue.yaml").read_text(encoding="utf-8")
    assert "\nsurvey:" in written and "\ncall_list:" in written  # written out, with their defaults
    assert load_config(tmp_path / "shop" / "cartrescue.yaml", env={}).ignored_keys() == []


def test_a_run_names_an_ignored_key_once_on_stderr_and_keeps_its_json_one_document(shop: Shop) -> None:
    shop.configure(sms={"sender": "MyShop"})
    result = shop.cli("run", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("sms.sender: ignored") == 1
    assert f"warning: {shop.config_path}: sms.sender: ignored" in result.stderr
    assert "decisions" in result.json


def test_a_quiet_run_does_not_name_an_ignored_key(shop: Shop) -> None:
    shop.configure(sms={"sender": "MyShop"})
    result = shop.cli("run", "--quiet")
    assert result.exit_code == 0 and result.stderr == "", result.output


def test_doctor_shows_an_ignored_key_as_a_warning_of_its_config_check(shop: Shop) -> None:
    shop.configure(sms={"sender": "MyShop"})
    result = shop.cli("doctor", "--json", "--no-smtp", now=None)
    config = next(check for check in result.json["checks"] if check["name"] == "config")
    assert config["status"] == "warn" and config["exit_code"] == 0
    assert f"{shop.config_path}: sms.sender: ignored" in config["detail"]


def test_over_budget_on_a_tier_that_sends_by_email_is_named_as_ignored(tmp_path: Path) -> None:
    """``over_budget: email`` sends a text or call the budget has no room for by e-mail; on a tier
    whose budget caps e-mails it did nothing, and the shop believed its best carts all got one."""
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv}\npriority:\n  tiers:\n"
                               "    - {name: all, min_score: 0}\n"
                               "    - {name: top, min_score: 50, budget: 5, over_budget: email}\n")
    assert lines == [f"{tmp_path / 'cartrescue.yaml'}: priority.tiers[1].over_budget: ignored: tier 'top' sends by "
                     "email, and only a text or a call its budget has no room for goes by e-mail instead: remove it "
                     "(line 5)"]


def test_budget_per_without_a_budget_is_named_as_ignored(tmp_path: Path) -> None:
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv}\n"
                               "priority: {tiers: [{name: all, min_score: 0, budget_per: day}]}\n")
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'cartrescue.yaml'}: priority.tiers[0].budget_per: ignored: "
                               "tier 'all' has no budget")


def test_a_budget_of_a_tier_whose_steps_all_go_by_another_channel_is_named_as_ignored(tmp_path: Path) -> None:
    """A budget caps the tier's own channel only: a call-list tier whose sequence sends every step
    by e-mail has nothing for its budget to count, so its cap of calls capped nothing."""
    lines = _ignored(tmp_path, "source: {type: csv, carts: c.csv}\n"
                               "priority: {tiers: [{name: all, min_score: 0, channel: call-list, budget: 5}]}\n"
                               "sequences: {default: {steps: [{delay: 1h, template: reminder-1, channel: email}]}}\n")
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'cartrescue.yaml'}: priority.tiers[0].budget: ignored: no step of "
                               "sequence 'default' goes out by call-list for tier 'all'")


def test_a_calling_tier_with_a_budget_and_over_budget_is_quiet(tmp_path: Path) -> None:
    assert _ignored(tmp_path, "source: {type: csv, carts: c.csv}\npriority: {tiers: [{name: all, min_score: 0, "
                              "channel: call-list, budget: 5, budget_per: day, over_budget: email}]}\n") == []
    assert _ignored(tmp_path, "source: {type: csv, carts: c.csv}\npriority: {tiers: [{name: all, min_score: 0, "
                              "budget: 5, budget_per: day}]}\n") == []


def test_the_outbox_path_is_named_as_ignored(tmp_path: Path) -> None:
    """``outbox: {path: …}`` of an older config: the shop believed runs wrote there, where only
    ``run --outbox DIR`` names the folder."""
    path = tmp_path / "cartrescue.yaml"
    assert _ignored(tmp_path, "source: {type: csv, carts: carts.csv}\noutbox:\n  path: mail-out\n") == [
        f"{path}: outbox.path: ignored: no command reads it: `run --outbox DIR` (and send-test's) names the "
        "folder: remove it (line 3)"]


def test_the_shop_database_switch_of_newsletters_on_a_csv_source_is_named_as_ignored(tmp_path: Path) -> None:
    path = tmp_path / "cartrescue.yaml"
    assert _ignored(tmp_path, "source:\n  type: csv\n  carts: carts.csv\n  newsletters:\n    shop_database: false\n"
                    ) == [f"{path}: source.newsletters.shop_database: ignored: a csv source reads exported files, "
                          "not a database: remove it (line 5)"]


def test_tls_settings_of_a_relay_without_tls_are_named_as_ignored(tmp_path: Path) -> None:
    """``ca_file`` and ``verify`` beside ``security: none``: the shop believed its relay's
    certificate was checked; no TLS is spoken, so nothing reads them."""
    path = tmp_path / "cartrescue.yaml"
    lines = _ignored(tmp_path, "source: {type: csv, carts: carts.csv}\nsmtp:\n  host: 127.0.0.1\n  security: none\n"
                               "  ca_file: relay-ca.pem\n  verify: false\n")
    why = "smtp.security is none: no TLS is spoken, so nothing reads it: remove it, or use starttls or tls"
    assert lines == [f"{path}: smtp.ca_file: ignored: {why} (line 5)", f"{path}: smtp.verify: ignored: {why} (line 6)"]


_FREE_SHIPPING = ("source: {type: csv, carts: carts.csv}\n" + EMAIL_ONLY + "sequences:\n  default:\n    steps:\n      - delay: 1h\n        template: reminder-1\n"
                  "        incentive: {kind: free_shipping, VALUEcode: SHIP}\n"
                  "        tier_incentives:\n          all: {kind: free_shipping, VALUEcode: SHIP}\n")


def test_the_value_of_a_free_shipping_incentive_is_named_as_ignored(tmp_path: Path) -> None:
    """No template shows it and ``report`` costs the offer at ``report.free_shipping_cost``: a
    shop that wrote its shipping fee there believed the report counted it."""
    lines = _ignored(tmp_path, _FREE_SHIPPING.replace("VALUE", "value: 10, "))
    path = tmp_path / "cartrescue.yaml"
    assert [line.split(": ignored")[0] for line in lines] == [
        f"{path}: sequences.default.steps[0].incentive.value",
        f"{path}: sequences.default.steps[0].tier_incentives.all.value"]
    assert lines[0].endswith("a free_shipping incentive shows no amount, and report counts what one costs as "
                             "report.free_shipping_cost: remove it (line 8)"), lines[0]


def test_a_free_shipping_incentive_without_a_value_is_quiet(tmp_path: Path) -> None:
    assert _ignored(tmp_path, _FREE_SHIPPING.replace("VALUE", "")) == []
