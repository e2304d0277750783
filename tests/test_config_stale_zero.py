"""A staleness limit of 0 is refused when the config loads, naming ``null`` where it switches
the check off.

``source.export_stale_after: 0`` (as many tools write "off") was taken: every export was stale
a second after it was written, and every sending run held back (exit 3, nothing sent) for good;
``doctor.stale_after: 0`` failed ``doctor`` (exit 5, "reminders have stopped") right after each
run that went well.
"""

from __future__ import annotations

from pathlib import Path

from conftest import cli


def _refusal(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cartrescue.yaml"
    path.write_text(text, encoding="utf-8")
    result = cli("carts", "--json", "--config", str(path))
    assert result.exit_code == 2, result.output
    return str(result.json["error"]["message"]).removeprefix(f"{path}: ")


def test_export_stale_after_0_is_refused_saying_null_switches_the_check_off(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "doctor: {}\nsource:\n  type: csv\n  carts: carts.csv\n  export_stale_after: 0\n")
    assert message == ("source.export_stale_after: must be longer than zero, got 0s (every export would be stale "
                       "at once, and every sending run held back: null switches the check off) (line 5)")


def test_doctor_stale_after_0_is_refused_naming_the_key_and_line(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "source: {type: csv, carts: carts.csv}\ndoctor:\n  stale_after: 0s\n")
    assert message == ("doctor.stale_after: must be longer than zero, got 0s (doctor would call reminders "
                       "stopped right after each run that went well) (line 3)")
