"""A/B variants and the holdout: deterministic per address, shares as configured, recorded in the ledger."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cartrescue.config import Config, ConfigError, load_config
from cartrescue.decide.experiments import Experiments, pick, subject, unit
from cartrescue.ledger import Ledger, Promoted, SentStep
from cartrescue.model import Cart, Customer
from conftest import NOW, REPO, Shop, cart

ADDRESSES = [f"customer{n}.{n * 7919 % 10007}@example{n % 13}.com" for n in range(10_000)]


def _config(**sequence: object) -> Config:
    steps = [
        {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}},
        {"delay": "24h", "template": "reminder-2", "variants": {"a": 1, "b": 1}},
        {"delay": "72h", "template": "reminder-3", "variants": {"ten": 1, "free": 1}, "experiment": "offer"},
    ]
    return Config.model_validate({
        "source": {"type": "csv", "carts": "carts.csv"},
        "sequences": {"default": {"steps": steps, **sequence}, "other": {"steps": steps[:1], "holdout": 0.1}},
        "priority": {"tiers": [{"name": "standard", "min_score": 0}]},
    })


def _shares(assign, keys) -> dict[str, float]:
    counts = Counter(assign(key) for key in keys)
    return {arm: n / len(keys) for arm, n in counts.items()}


def test_the_draw_is_uniform_stable_and_depends_on_the_salt() -> None:
    draws = [unit(a, "s1") for a in ADDRESSES]
    assert all(0 <= d < 1 for d in draws)
    assert draws == [unit(a, "s1") for a in ADDRESSES]
    assert sum(d < 0.5 for d in draws) / len(draws) == pytest.approx(0.5, abs=0.015)
    assert sum(abs(d - unit(a, "s2")) > 1e-12 for d, a in zip(draws, ADDRESSES)) > 9_990


def test_the_address_is_normalized_and_phone_or_cart_stand_in_without_one() -> None:
    def make(email: str | None, phone: str | None = None) -> Cart:
        return Cart("7", "csv", Customer(email, phone=phone), "EUR", (), 0, NOW, NOW)  # type: ignore[arg-type]

    assert subject(make(" Bob@Example.COM ")) == subject(make("bob@example.com")) == "bob@example.com"
    assert subject(make(None, "+46 70-123 45 67")) == "tel:+46701234567"
    assert subject(make(None)) == "cart:csv:7"


@pytest.mark.parametrize(
    "holdout,weights",
    [(0.1, {"a": 1, "b": 1}), (0.2, {"a": 70, "b": 20, "c": 10}), (0.0, {"a": 1, "b": 1, "c": 1}), (0.05, {})],
)
def test_over_10000_addresses_every_share_is_within_1_5_points_of_its_weight(holdout, weights) -> None:
    steps = [{"delay": "1h", "template": "reminder-1", **({"variants": weights} if weights else {})}]
    config = Config.model_validate({"source": {"type": "csv", "carts": "c.csv"},
                                    "sequences": {"default": {"steps": steps, "holdout": holdout}}})
    experiments = Experiments(config)

    def arm(key: str) -> str | None:
        return "holdout" if experiments.held_out(key, "default") else experiments.variant(key, "default", 1)

    observed = _shares(arm, ADDRESSES)
    total = sum(weights.values()) or 1
    expected = {name: (1 - holdout) * w / total for name, w in weights.items()} or {None: 1 - holdout}
    if holdout:
        expected["holdout"] = holdout
    assert set(observed) == set(expected)
    for name, share in expected.items():
        assert abs(observed[name] - share) <= 0.015, (name, observed[name], share)
    if weights:
        assert experiments.shares("default", 1) == pytest.approx(expected)


def test_assignment_is_the_same_in_another_process_and_whatever_the_order_of_the_weights() -> None:
    config = _config(holdout=0.1)
    mine = [(Experiments(config).held_out(a, "default"), Experiments(config).variant(a, "default", 1))
            for a in ADDRESSES[:300]]
    script = (
        "import json,sys; from cartrescue.config import Config; from cartrescue.decide.experiments import Experiments\n"
        "steps=[{'delay':'1h','template':'reminder-1','variants':{'b':1,'a':1}}]\n"  # keys reversed
        "c=Config.model_validate({'source':{'type':'csv','carts':'c.csv'},'sequences':{'default':{'steps':steps,'holdout':0.1}}})\n"
        "e=Experiments(c); print(json.dumps([[e.held_out(a,'default'),e.variant(a,'default',1)] for a in json.load(sys.stdin)]))"
    )
    import json

    out = subprocess.run([sys.executable, "-c", script], input=json.dumps(ADDRESSES[:300]), capture_output=True,
                         text=True, check=True, cwd=REPO, env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout
    assert [tuple(pair) for pair in json.loads(out)] == mine
    assert {v for _h, v in mine} == {"a", "b"} and any(h for h, _v in mine)


def test_one_arm_throughout_a_sequence_and_independent_experiments_are_not_correlated() -> None:
    experiments = Experiments(_config())
    first = [experiments.variant(a, "default", 1) for a in ADDRESSES]
    assert first == [experiments.variant(a, "default", 2) for a in ADDRESSES]  # same experiment: same arm
    offer = [experiments.variant(a, "default", 3) for a in ADDRESSES]
    both = Counter(zip(first, offer))
    assert set(offer) == {"ten", "free"}
    for pair in (("a", "ten"), ("a", "free"), ("b", "ten"), ("b", "free")):  # ~25% each: independent draws
        assert abs(both[pair] / len(ADDRESSES) - 0.25) <= 0.015, both


def test_the_holdout_is_the_same_address_in_every_sequence_and_a_larger_share_only_adds() -> None:
    experiments = Experiments(_config(holdout=0.1))
    assert [experiments.held_out(a, "default") for a in ADDRESSES] == [experiments.held_out(a, "other") for a in ADDRESSES]
    larger = Experiments(_config(holdout=0.3))
    held = {a for a in ADDRESSES if experiments.held_out(a, "default")}
    more = {a for a in ADDRESSES if larger.held_out(a, "default")}
    assert held < more and abs(len(more) / len(ADDRESSES) - 0.3) <= 0.015
    none = Experiments(_config())
    assert not any(none.held_out(a, "default") for a in ADDRESSES)  # no holdout configured


def test_pick_uses_sorted_names_and_covers_the_top_edge() -> None:
    assert pick(0.0, {"b": 1, "a": 1}) == "a" and pick(0.49, {"b": 1, "a": 1}) == "a"
    assert pick(0.5, {"b": 1, "a": 1}) == "b" and pick(0.999999999, {"a": 1, "b": 2}) == "b"


@pytest.mark.parametrize(
    "step,message",
    [({"variants": {"a": 1}}, "one variant is no test"), ({"variants": {"A b": 1, "c": 1}}, "variant names"),
     ({"variants": {"a": 0, "b": 1}}, "above 0")],
)
def test_bad_variants_are_config_errors(tmp_path: Path, step: dict, message: str) -> None:
    import yaml

    path = tmp_path / "cartrescue.yaml"
    path.write_text(yaml.safe_dump({"source": {"type": "csv", "carts": "c.csv"}, "sequences": {"default": {
        "steps": [{"delay": "1h", "template": "reminder-1", **step}]}}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "sequences.default.steps[0].variants" in str(info.value)


def test_a_holdout_of_one_or_more_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "cartrescue.yaml"
    path.write_text("source: {type: csv, carts: c.csv}\nsequences:\n  default:\n    holdout: 1\n"
                    "    steps: [{delay: 1h, template: reminder-1}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="sequences.default.holdout"):
        load_config(path)


# -- through the pipeline ---------------------------------------------------------------------

def _experiment_shop(shop: Shop, carts: int = 60) -> Shop:
    folder = shop.folder / "templates" / "en"
    folder.mkdir(parents=True)
    (folder / "reminder-1@b.subject.txt").write_text("Variant B: your cart at {{ shop.name }} is waiting\n",
                                                     encoding="utf-8")
    shop.add(*(cart(f"c{i:03}", email=f"person{i}@example.com") for i in range(carts)))
    shop.configure(templates="templates", sequences={"default": {"holdout": 0.25, "steps": [
        {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}},
        {"delay": "24h", "template": "reminder-2", "variants": {"a": 1, "b": 1}},
    ]}})
    return shop


def test_planning_shows_holdout_and_variants_and_matches_the_assignment(shop: Shop) -> None:
    _experiment_shop(shop)
    rows = shop.decisions()
    experiments = Experiments(load_config(shop.config_path))
    for row in rows.values():
        held = experiments.held_out(row["email"], "default")
        assert row["action"] == ("holdout" if held else "send"), row
        assert row["reason"] == ("holdout" if held else "due")
        assert row["variant"] == (None if held else experiments.variant(row["email"], "default", 1))
    actions = Counter(row["action"] for row in rows.values())
    assert actions["holdout"] > 0 and actions["send"] > 0
    assert {row["variant"] for row in rows.values() if row["action"] == "send"} == {"a", "b"}


def test_a_run_records_the_holdout_sends_nothing_to_it_and_renders_each_variant(shop: Shop) -> None:
    _experiment_shop(shop)
    outbox = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(outbox), "--json")
    assert result.exit_code == 0, result.output
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    messages = {m["cart_id"]: m for m in ledger.messages()}
    assert len(messages) == 60
    held = {cid for cid, m in messages.items() if m["status"] == "held_out"}
    sent = {cid for cid, m in messages.items() if m["status"] == "sent"}
    assert held and sent and held | sent == set(messages)
    assert all(messages[c]["transport"] == "holdout" and messages[c]["variant"] is None for c in held)
    assert result.json["counts"]["holdout"] == len(held) and result.json["counts"]["sent"] == len(sent)
    files = {f.name.split("-step")[0]: f.read_text(encoding="utf-8") for f in outbox.glob("*.eml")}
    assert len(files) == len(sent)
    assert not any(c in name for name in files for c in held)
    for cid in sent:
        eml = next(text for name, text in files.items() if cid in name)
        if messages[cid]["variant"] == "b":
            assert "Subject: Variant B: your cart at Test Shop is waiting" in eml
            assert "X-Cartrescue-Variant: b" in eml
        else:
            assert messages[cid]["variant"] == "a" and "Variant B" not in eml

    # A day later the held-out carts reach step 2 held out again, and the others get step 2 in
    # the same arm: one variant throughout, and the control group stays a control group.
    later = NOW + timedelta(days=1, hours=1)
    again = shop.cli("run", "--outbox", str(outbox), "--json", now=later)
    assert again.exit_code == 0, again.output
    step2 = {m["cart_id"]: m for m in ledger.messages() if m["step"] == 2}
    assert {c for c, m in step2.items() if m["status"] == "held_out"} == held
    assert all(step2[c]["variant"] == messages[c]["variant"] for c in sent)


def _arms_of_step_1(shop: Shop) -> dict[str, str]:
    """Step 1 to the experiment shop's carts; ``{cart_id: variant}`` of those it went out to."""
    _experiment_shop(shop)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    return {m["cart_id"]: m["variant"] for m in shop.messages() if m["status"] == "sent"}


def test_an_arm_added_mid_test_moves_no_customer_already_in_the_experiment(shop: Shop) -> None:
    """The arm was drawn again from the current weights at every step: adding ``c`` to both
    steps after step 1 went out moved about half of the customers to another arm at step 2."""
    first = _arms_of_step_1(shop)
    assert set(first.values()) == {"a", "b"}
    arms = {"a": 1, "b": 1, "c": 1}
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "variants": arms},
        {"delay": "24h", "template": "reminder-2", "variants": arms},
    ]}})
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(hours=25))
    assert later.exit_code == 0, later.output
    second = {m["cart_id"]: m["variant"] for m in shop.messages() if m["step"] == 2 and m["status"] == "sent"}
    assert set(second) == set(first)
    assert {c: second[c] for c in first} == first


def test_a_stream_whose_arm_the_later_step_dropped_is_drawn_with_that_steps_weights(shop: Shop) -> None:
    first = _arms_of_step_1(shop)
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}},
        {"delay": "24h", "template": "reminder-2", "variants": {"b": 1, "c": 1}},
    ]}})
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(hours=25))
    assert later.exit_code == 0, later.output
    second = {m["cart_id"]: m["variant"] for m in shop.messages() if m["step"] == 2 and m["status"] == "sent"}
    experiments = Experiments(load_config(shop.config_path))
    for cart_id, variant in first.items():
        drawn = experiments.variant(f"person{int(cart_id[1:])}@example.com", "default", 2)
        assert second[cart_id] == ("b" if variant == "b" else drawn), cart_id


def test_a_promoted_winner_does_not_move_a_stream_already_in_another_arm(shop: Shop) -> None:
    """A promotion decides the arm of streams that start after it; one under way finishes in
    its arm (one variant throughout), while a new stream gets the winner."""
    first = _arms_of_step_1(shop)
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        assert ledger.promote("default", 2, "b", 0.99, 500, NOW)
    finally:
        ledger.close()
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(hours=25))
    assert later.exit_code == 0, later.output
    second = {m["cart_id"]: m["variant"] for m in shop.messages() if m["step"] == 2 and m["status"] == "sent"}
    assert {c: second[c] for c in first} == first and "a" in first.values()
    fresh = Experiments(load_config(shop.config_path), {("default", 2): Promoted("b", NOW)})
    assert {fresh.variant(f"new{n}@example.com", "default", 2) for n in range(20)} == {"b"}


def test_a_stream_that_started_after_the_promotion_gets_the_winner_at_the_promoted_step() -> None:
    """A promotion of step 2 goes to every stream that starts after it (docs/reporting.md). A
    stream's step 1 of the same experiment, drawn before step 2 was due, was read as a stream
    already in its arm: about half of the streams started after the promotion got ``a`` at step 2."""
    promoted_at = NOW
    experiments = Experiments(_config(), {("default", 2): Promoted("b", promoted_at)})

    def step_2(first_went_out: datetime, arm: str, status: str = "sent") -> str | None:
        return experiments.variant("x@example.com", "default", 2,
                                   [SentStep(1, "email", status, first_went_out, arm, "default")])

    assert step_2(promoted_at + timedelta(minutes=40), "a") == "b"  # started after it
    assert step_2(promoted_at + timedelta(seconds=1), "a") == "b"
    assert step_2(promoted_at, "a") == "a"  # under way when it was promoted: finishes in its arm
    assert step_2(promoted_at - timedelta(minutes=1), "a") == "a"
    assert step_2(promoted_at - timedelta(minutes=1), "b") == "b"
    assert step_2(promoted_at - timedelta(minutes=1), "a", status="failed") == "b"  # nothing went out: not started
    # Step 3 of the same experiment has no promotion: it keeps the arm step 2 went out in.
    after = [SentStep(1, "email", "sent", promoted_at + timedelta(hours=1), "a", "default"),
             SentStep(2, "email", "sent", promoted_at + timedelta(hours=25), "b", "default")]
    shared = Experiments(_config(steps=[{"delay": f"{n}h", "template": f"reminder-{n}", "variants": {"a": 1, "b": 1}}
                                        for n in (1, 2, 3)]), {("default", 2): Promoted("b", promoted_at)})
    assert shared.variant("x@example.com", "default", 3, after) == "b"


def test_a_dry_run_records_no_holdout(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the summary panel on one line
    _experiment_shop(shop, carts=20)
    result = shop.cli("run", "--json")
    assert result.exit_code == 0, result.output
    held = result.json["counts"]["holdout"]
    assert held > 0
    assert Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").messages() == []
    table = shop.cli("run")
    assert f"{held} held out" in table.stdout


def test_a_holdout_whose_outcome_cannot_be_written_leaves_no_claim_behind(shop: Shop) -> None:
    """A held-out step's claim and its ``held_out`` outcome commit together. Written apart, a
    failure (or a stop, or a kill) between them left a control-group row ``claimed``: counted as
    a message that may have gone out, and missing from the holdout side of the report."""
    _experiment_shop(shop, carts=20)
    outbox = shop.folder / "out"
    db = shop.folder / "ledger.db"
    Ledger(f"sqlite:///{db}").close()  # creates its tables
    with sqlite3.connect(db) as conn:  # the database refuses the outcome, as a full disk would
        conn.execute("CREATE TRIGGER refuse BEFORE UPDATE OF status ON cr_message WHEN NEW.status = 'held_out' "
                     "BEGIN SELECT RAISE(ABORT, 'no room for held_out'); END")
    failed = shop.cli("run", "--outbox", str(outbox), "--json")
    assert failed.exit_code != 0 and "no room for held_out" in failed.output
    ledger = Ledger(f"sqlite:///{db}")
    assert [m for m in ledger.messages() if m["transport"] == "holdout"] == []

    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER refuse")
    again = shop.cli("run", "--outbox", str(outbox), "--json")
    assert again.exit_code == 0, again.output
    held = [m for m in ledger.messages() if m["transport"] == "holdout"]
    assert held and {m["status"] for m in held} == {"held_out"}
    assert again.json["counts"]["holdout"] == len(held)


def test_assigns_says_where_a_holdout_or_variants_look_at_who_is_asked() -> None:
    config = Config.model_validate({
        "source": {"type": "csv", "carts": "carts.csv"},
        "sequences": {"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                            {"delay": "24h", "template": "reminder-2", "variants": {"a": 1, "b": 1}}]},
                      "held": {"steps": [{"delay": "1h", "template": "reminder-1"}], "holdout": 0.5}},
        "priority": {"tiers": [{"name": "standard", "min_score": 0}]},
    })
    experiments = Experiments(config)
    assert not experiments.assigns("default", 1) and experiments.assigns("default", 2)
    assert experiments.assigns("held", 1)
    # Where it does not, who is asked makes no difference: nobody held out, no variant.
    assert not experiments.held_out("", "default") and experiments.variant("", "default", 1) is None
    assert {experiments.held_out(key, "held") for key in ADDRESSES[:200]} == {True, False}
    assert {experiments.variant(key, "default", 2) for key in ADDRESSES[:200]} == {"a", "b"}


@pytest.mark.parametrize("columns", ["80", "160"])
def test_a_dry_runs_table_shows_each_sends_variant_beside_its_step(shop: Shop, monkeypatch: pytest.MonkeyPatch,
                                                                    columns: str) -> None:
    """The table of a dry-run gave no sign of the arm (only --json's `variant`): the owner
    checking an A/B test before the first live run saw step 1 for every cart."""
    monkeypatch.setenv("COLUMNS", columns)
    _experiment_shop(shop, carts=12)
    arms = {cart_id: row["variant"] for cart_id, row in shop.decisions(command="run").items()
            if row["action"] == "send"}
    assert set(arms.values()) == {"a", "b"}
    result = shop.cli("run", "--all")
    assert result.exit_code == 0, result.output
    for cart_id, variant in arms.items():
        (line,) = [line for line in result.stdout.splitlines() if f" {cart_id} " in line]
        assert re.search(rf"│\s+1 \({variant}\) │", line), line
    held = [line for line in result.stdout.splitlines() if line.startswith("│ c") and "holdout" in line]
    assert held and all(re.search(r"│\s+1 │", line) for line in held), held
