"""When every customer was last served, from each shard's last success (``doctor``'s staleness)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cartrescue.shards import Coverage, coverage

NOW = datetime(2026, 12, 4, 12, tzinfo=timezone.utc)


def test_a_layout_covers_everyone_when_its_stalest_shard_last_succeeded() -> None:
    found = coverage({"1/3": NOW, "2/3": NOW - timedelta(hours=5), "3/3": NOW - timedelta(minutes=5)})
    assert found == Coverage(NOW - timedelta(hours=5), "2/3")


def test_a_layout_with_a_shard_that_never_succeeded_covers_no_one() -> None:
    assert coverage({"1/2": NOW}, newest_layout=2) == Coverage(None, None, ("2/2",))


def test_the_newest_complete_layout_wins_over_an_older_one() -> None:
    found = coverage({"": NOW - timedelta(days=2), "1/2": NOW - timedelta(hours=1), "2/2": NOW - timedelta(hours=2)})
    assert found == Coverage(NOW - timedelta(hours=2), "2/2")


def test_an_unsharded_success_names_no_shard() -> None:
    assert coverage({"": NOW, "1/2": NOW - timedelta(hours=1)}) == Coverage(NOW)


def test_a_shard_text_cartrescue_never_writes_is_ignored() -> None:
    assert coverage({"": NOW, "junk": NOW + timedelta(hours=1)}) == Coverage(NOW)
