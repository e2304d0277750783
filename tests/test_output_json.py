"""The ``--json`` rows: the fast writer gives exactly the bytes of ``json.dumps(result_dict(...))``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cartrescue.model import Action, Address, Cart, Customer, Decision, OutgoingMessage, Reason
from cartrescue.output import ScoreTexts, _iso, result_dict, result_json
from cartrescue.pipeline import Counts, Result
from conftest import cli

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
text = st.text(st.characters(codec="utf-8"), max_size=30)  # quotes, backslashes, controls, non-ASCII
maybe_text = st.none() | text


@st.composite
def results(draw: st.DrawFn) -> Result:
    customer = Customer(email=draw(maybe_text))
    cart = Cart(
        id=draw(text), source=draw(st.sampled_from(["csv", "shopify", "magento2"])), customer=customer,
        currency=draw(st.sampled_from(["EUR", "SEK", "HUF"])), items=(),
        total=draw(st.decimals(allow_nan=False, allow_infinity=False, places=draw(st.integers(0, 3)))),
        created_at=NOW, updated_at=NOW - timedelta(seconds=draw(st.integers(0, 10**8)), microseconds=draw(st.integers(0, 999_999))),
    )
    not_before = draw(st.none() | st.datetimes(timezones=st.just(timezone.utc)))
    decision = Decision(
        cart=cart, action=draw(st.sampled_from(list(Action))), reason=draw(st.sampled_from(list(Reason))),
        score=draw(st.none() | st.floats() | st.integers(-5, 500)), tier=draw(maybe_text),
        step=draw(st.none() | st.integers(1, 9)), channel=draw(maybe_text), template=draw(maybe_text),
        variant=draw(maybe_text), not_before=not_before, detail=draw(text),
    )
    message = None
    if draw(st.booleans()):
        message = OutgoingMessage(message_id="<m@x>", sender=Address("shop@example.com"), to=Address("a@example.com"),
                                  subject=draw(text), text="t", html="h", date=NOW)
    return Result(decision, delivery=draw(st.sampled_from(["", "dry-run", "sent", "render_error"])),
                  detail=draw(text), message=message)


@settings(max_examples=400)
@given(results())
@example(Result(Decision(cart=Cart("c\"1\\", "csv", Customer(None), "EUR", (), Decimal("1E+2"), NOW, NOW),
                         action=Action.SEND, reason=Reason.DUE, score=float("nan"))))
def test_result_json_writes_the_bytes_json_dumps_writes(result: Result) -> None:
    assert result_json(result) == json.dumps(result_dict(result), ensure_ascii=False, default=str)


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--workers", "0", "--json"], "Invalid value for '--workers': Input should be greater than or equal to 1"),
    (["run", "--bogus", "--json"], "No such option: --bogus"),
    (["forget", "--json"], "Missing argument 'EMAIL|PHONE'."),
    (["templates", "check", "--bogus", "--json"], "No such option: --bogus"),
    (["bogus", "--json"], "No such command 'bogus'."),
])
def test_a_usage_error_under_json_is_one_document_too(args: list[str], message: str) -> None:
    """typer prints a usage error as a panel on stderr and nothing on stdout: a script reading
    the ``--json`` document found none."""
    result = cli(*args)
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"error": {"code": "config", "exit_code": 2, "message": message}}
    assert message.split(":")[0].rstrip(".") in result.stderr  # the panel is still there


def test_a_usage_error_without_json_prints_nothing_on_stdout() -> None:
    result = cli("run", "--bogus")
    assert (result.exit_code, result.stdout) == (2, "")


@settings(max_examples=300)
@given(st.datetimes(timezones=st.none() | st.just(timezone.utc) | st.timezones())
       | st.datetimes(timezones=st.just(timezone.utc)).map(lambda moment: moment.replace(microsecond=0)))
def test_a_time_is_written_as_isoformat_writes_it(moment: datetime) -> None:
    """The row's times are put together from their fields in UTC (fast), as ``isoformat`` gives
    them with ``Z`` for ``+00:00``: years below 1000, microseconds, other zones and naive times too."""
    assert _iso(moment) == moment.isoformat().replace("+00:00", "Z")


def test_the_counts_add_up_actions_and_reasons_by_their_plain_text() -> None:
    at = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
    made = Cart("c1", "csv", Customer("a@example.com"), "EUR", (), Decimal("9"), at, at)
    counts = Counts()
    for action, reason in ((Action.SEND, Reason.DUE), (Action.SKIP, Reason.TOO_OLD), (Action.SEND, Reason.DUE)):
        counts.add(Result(Decision(made, action, reason), "dry-run" if action is Action.SEND else ""))
    assert {type(key) for key in (*counts.actions, *counts.reasons)} == {str}
    document = counts.as_dict()
    assert (document["carts"], document["send"], document["skip"], document["reasons"]) == \
        (3, 2, 1, {"due": 2, "too_old": 1})


def test_a_score_is_written_as_json_dumps_writes_it_after_an_equal_score_of_another_text() -> None:
    """The row writer keeps each score's text for the run: ``0.0`` and ``-0.0``, ``1.0`` and
    ``1`` are equal (one dict key) but written apart, and NaN and the infinities are never kept."""
    cart = Cart("c1", "csv", Customer("a@example.com"), "EUR", (), Decimal("5"), NOW, NOW)
    scores: list[float | int] = [0.0, -0.0, 0.0, 1.0, 1, 1.0, 1, 2.5, 2.5, float("nan"), float("inf"),
                                 -float("inf"), -0.0, 1e300, 1e300, -7.25, -7.25, 0]
    texts = ScoreTexts()  # one run's, as its JsonStream keeps it
    for score in scores:
        result = Result(Decision(cart=cart, action=Action.SEND, reason=Reason.DUE, score=score))
        assert result_json(result, texts) == json.dumps(result_dict(result), ensure_ascii=False, default=str), score
