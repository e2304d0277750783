"""The CSV files a person opens in a spreadsheet (the call list, the survey export) write a
formula as text, by one rule (cartrescue.text.spreadsheet_text): OWASP's CSV-injection list,
leading tab and CR included, and a formula behind spaces, which an import that trims them runs.
"""

from __future__ import annotations

import pytest

from cartrescue.channels.call_list import cell
from cartrescue.survey import _cell as survey_cell

BEHIND_WHITESPACE = ["\t=HYPERLINK(\"http://evil.example\",\"x\")", " =1+1", "\r\t@SUM(A1)"]


@pytest.mark.parametrize("value", BEHIND_WHITESPACE)
def test_a_call_list_cell_with_a_formula_behind_a_tab_or_space_is_text(value: str) -> None:
    """The tab became a space, and " =HYPERLINK(…" went out as it was."""
    assert cell(value).startswith("'"), cell(value)


@pytest.mark.parametrize("value", BEHIND_WHITESPACE)
def test_a_survey_export_cell_with_a_formula_behind_spaces_is_text(value: str) -> None:
    assert survey_cell(value).startswith("'"), survey_cell(value)


@pytest.mark.parametrize("value", ["=1+1", "+46701234567", "-5", "@SUM(A1)"])
def test_both_files_escape_what_owasp_lists_alike(value: str) -> None:
    assert survey_cell(value) == "'" + value == cell(value)


@pytest.mark.parametrize("value", ["\tplain", "\rplain"])
def test_a_leading_tab_or_cr_the_survey_export_keeps_is_escaped(value: str) -> None:
    """The call list has no tab nor CR left to escape: it writes them as a space, or not at all."""
    assert survey_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Anna", "", "  Anna", "O'Neil", "1 × Lamp"])
def test_text_without_a_formula_is_written_as_it_is(value: str) -> None:
    assert cell(value) == value and survey_cell(value) == value
