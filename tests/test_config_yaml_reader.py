"""The config's YAML is read by libyaml where PyYAML has it, by PyYAML's own reader otherwise and
for every document libyaml refuses or that is past a bound: both readings give the same values,
the same key lines and the same errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cartrescue.config import load_config, safe_yaml
from cartrescue.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

ANCHORS = """\
defaults: &tier
  min_score: 0
  channel: email
priority:
  tiers:
    - <<: *tier
      name: top
      min_score: 80
    - name: rest   # a comment
      <<: *tier
shop:
  name: "Caf\\u00e9 ‘Ann’"
  when: 2026-11-20T10:00:00Z
  numbers: [1, 2.5, 0x1F, .inf, ~, yes, 'no']
  text: |
    two
    lines
"""


def _read(text: str, path: Path, libyaml: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[Any, int]]:
    lines: dict[Any, int] = {}
    with monkeypatch.context() as patch:
        if not libyaml:
            patch.setattr(yaml, "__with_libyaml__", False)
        return safe_yaml(text, path, lines), lines


def _error(text: str, path: Path, libyaml: bool, monkeypatch: pytest.MonkeyPatch) -> str:
    with monkeypatch.context() as patch:
        if not libyaml:
            patch.setattr(yaml, "__with_libyaml__", False)
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
    return str(caught.value)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="this PyYAML has no libyaml: only its own reader reads")
@pytest.mark.parametrize("name", ["config.example.yaml", "examples/cartrescue.yaml"])
def test_libyaml_reads_a_shipped_config_as_pyyaml_does_with_the_same_key_lines(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (REPO / name).read_text(encoding="utf-8")
    fast, pure = (_read(text, tmp_path / "c.yaml", libyaml, monkeypatch) for libyaml in (True, False))
    assert fast == pure
    assert len(fast[1]) > 20  # the lines of its keys were read


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="this PyYAML has no libyaml: only its own reader reads")
def test_libyaml_reads_anchors_merges_and_scalars_as_pyyaml_does(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fast, pure = (_read(ANCHORS, tmp_path / "c.yaml", libyaml, monkeypatch) for libyaml in (True, False))
    assert fast == pure
    assert fast[0]["priority"]["tiers"][0] == {"min_score": 80, "channel": "email", "name": "top"}
    assert fast[1][("priority", "tiers", 1, "name")] == 9


@pytest.mark.parametrize("text", [
    "shop:\n  name: A\n  name: B\n",  # a key twice
    "shop:\n\tname: A\n",  # a tab
    "shop: [not closed\n",
    "shop: {a: 1}\n---\nshop: {}\n",  # two documents
    "a: &a [x, x]\n" + "".join(f"b{n}: &b{n} [*{'a' if n == 0 else f'b{n - 1}'}, *{'a' if n == 0 else f'b{n - 1}'}]\n"
                                for n in range(40)),  # aliases past the bound
    "a: " + "[" * 40 + "]" * 40 + "\n",  # nested too deep
])
def test_either_reader_refuses_a_document_with_the_same_error(text: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fast, pure = (_error(text, tmp_path / "cartrescue.yaml", libyaml, monkeypatch) for libyaml in (True, False))
    assert fast == pure
    assert fast.startswith(f"{tmp_path / 'cartrescue.yaml'}"), fast
