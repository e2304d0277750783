"""A template's usual mistakes, as `preview` and a dry-run report them: the file and line, what is
unknown, and the close names that exist (a developer fixing a typo should not have to guess from
Jinja's "'dict object' has no attribute 'totl'")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO, Shop, cart


def _shop_with(shop: Shop, tmp_path: Path, file: str, old: str, new: str) -> Shop:
    """The shop with a copy of the shipped templates in which ``file``'s first ``old`` is ``new``."""
    folder = tmp_path / "templates"
    shutil.copytree(REPO / "templates", folder)
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    shop.configure(templates=str(folder))
    shop.add(cart("c1"))
    return shop


def _line_of(tmp_path: Path, file: str, fragment: str) -> int:
    lines = (tmp_path / "templates" / file).read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if fragment in line)


def _preview_error(shop: Shop) -> str:
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 1, result.output
    return result.json["error"]["message"]


def test_a_misspelt_cart_field_in_a_preview_names_the_path_and_the_close_name(shop: Shop, tmp_path: Path) -> None:
    _shop_with(shop, tmp_path, "en/reminder-1.txt", "{{ cart.total }}", "{{ cart.totl }}")
    line = _line_of(tmp_path, "en/reminder-1.txt", "cart.totl")
    message = _preview_error(shop)
    assert message == (f"en/reminder-1.txt:{line}: 'cart.totl' is undefined: cart has no 'totl' "
                       "(did you mean cart.total?)"), message


def test_a_misspelt_item_field_in_a_dry_run_names_the_close_name(shop: Shop, tmp_path: Path) -> None:
    """``item`` is a loop's variable, not the context's: its fields are those of ``items``."""
    _shop_with(shop, tmp_path, "en/reminder-1.txt", "{{ item.name }}", "{{ item.nmae }}")
    result = shop.cli("run")
    assert result.exit_code == 1, result.output
    assert "'item.nmae' is undefined: item has no 'nmae' (did you mean item.name?)" in result.stderr, result.stderr


def test_a_misspelt_customer_field_names_the_close_name(shop: Shop, tmp_path: Path) -> None:
    _shop_with(shop, tmp_path, "en/reminder-1.html", "Hi {{ customer.greeting_name }}",
               "Hi {{ customer.frist_name }}")
    message = _preview_error(shop)
    assert "'customer.frist_name' is undefined: customer has no 'frist_name' (did you mean customer.first_name " \
        "or customer.last_name?)" in message, message  # the closest first


def test_a_field_without_a_close_name_lists_the_fields_there_are(shop: Shop, tmp_path: Path) -> None:
    _shop_with(shop, tmp_path, "en/reminder-1.txt", "{{ cart.total }}", "{{ cart.xyzzy }}")
    message = _preview_error(shop)
    assert "'cart.xyzzy' is undefined: cart has no 'xyzzy' (it has: currency, has_images, id, item_count, " \
        "items_not_shown, total)" in message, message


def test_a_misspelt_variable_names_the_close_variable(shop: Shop, tmp_path: Path) -> None:
    _shop_with(shop, tmp_path, "en/reminder-1.html", "{{ shop.name }}", "{{ shpo.name }}")
    line = _line_of(tmp_path, "en/reminder-1.html", "shpo.name")
    assert _preview_error(shop) == f"en/reminder-1.html:{line}: 'shpo' is undefined (did you mean shop?)"


def test_an_unknown_filter_names_the_close_filter(shop: Shop, tmp_path: Path) -> None:
    _shop_with(shop, tmp_path, "en/reminder-1.txt", "{{ cart.total }}", "{{ cart.total|money2 }}")
    line = _line_of(tmp_path, "en/reminder-1.txt", "money2")
    assert _preview_error(shop) == f"en/reminder-1.txt:{line}: No filter named 'money2' (did you mean money?)"


@pytest.mark.parametrize(("old", "new", "said"), [
    ('"_layout.html"', '"_layuot.html"', "no template file _layuot.html (did you mean _layout.html?)"),
    ('"_macros.html"', '"_macro.html"', "no template file _macro.html (did you mean _macros.html?)"),
])
def test_a_missing_layout_or_macro_file_names_the_line_and_the_close_file(shop: Shop, tmp_path: Path, old: str,
                                                                         new: str, said: str) -> None:
    """It said "en/reminder-1.html:1: _layuot.html": the name alone, as if it were the error."""
    _shop_with(shop, tmp_path, "en/reminder-1.html", old, new)
    line = _line_of(tmp_path, "en/reminder-1.html", new)
    assert _preview_error(shop) == f"en/reminder-1.html:{line}: {said}"


def test_an_unclosed_if_names_the_line_it_was_opened_on(shop: Shop, tmp_path: Path) -> None:
    """Jinja notices an unclosed ``{% if %}`` at the end of the file and names that line only: in a
    long part, the developer had to find the opening tag by eye."""
    _shop_with(shop, tmp_path, "en/reminder-1.txt", "{% if customer.is_returning %}Thank",
               "{% if customer.is_returning %}{% if cart.item_count > 1 %}Thank")
    opened = _line_of(tmp_path, "en/reminder-1.txt", "{% if cart.item_count > 1 %}")
    message = _preview_error(shop)
    assert "The innermost block that needs to be closed is 'if'" in message, message
    assert message.endswith(f"(the {{% if %}} of line {opened})"), message


def test_a_preview_whose_text_part_renders_empty_warns(shop: Shop, tmp_path: Path) -> None:
    """The HTML renders, the text part is empty (a ``{# todo #}`` left in it): the preview showed it
    without a word, and a sending run sends that e-mail with an empty plain-text part."""
    folder = tmp_path / "templates"
    shutil.copytree(REPO / "templates", folder)
    (folder / "en" / "reminder-1.txt").write_text("{# todo #}\n", encoding="utf-8")
    shop.configure(templates=str(folder))
    shop.add(cart("c1"))
    said = ("en/reminder-1.txt: the text part renders empty: a run sends this e-mail with an empty plain-text "
            "part (templates check: missing-text)")
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["text"].strip() == "" and said in result.json["warnings"], result.json["warnings"]
    assert f"warning: {said}" in " ".join(shop.cli("preview", "c1").stderr.split())


def test_a_macro_imported_under_a_misspelt_name_names_the_import(shop: Shop, tmp_path: Path) -> None:
    """``{% from "_macros.html" import items_tabel %}`` then ``{{ items_table(...) }}``: the names a
    template imports, sets or defines count among the close names, so the typo is found."""
    _shop_with(shop, tmp_path, "en/reminder-1.html", "import items_table,", "import items_tabel,")
    line = _line_of(tmp_path, "en/reminder-1.html", "{{ items_table(")
    assert _preview_error(shop) == f"en/reminder-1.html:{line}: 'items_table' is undefined (did you mean items_tabel?)"


def test_a_hint_over_keys_of_mixed_types_still_names_them() -> None:
    """A dict a run's context holds is keyed by text, but a hint must never raise where Jinja's
    message would have done: sorting ``{1: …, "x": …}``'s keys raised TypeError."""
    from cartrescue.compose.render import undefined_message

    said = undefined_message("'dict object' has no attribute 'zz'", "{{ data.zz }}", 1, {"data": {1: "a", "x": 2}})
    assert said == "'data.zz' is undefined: data has no 'zz' (it has: 1, x)"


def test_a_part_missing_from_a_locale_folder_says_to_add_it_not_another_languages_file(
        shop: Shop, tmp_path: Path) -> None:
    """A new ``de`` folder without its HTML part: the run failed each German cart with "no
    template file de/reminder-1.html (did you mean ru/reminder-1.html or de/reminder-3.html …?)",
    as if a Russian file or another step's would do."""
    folder = tmp_path / "templates" / "de"
    folder.mkdir(parents=True)
    for part in ("subject.txt", "txt"):
        shutil.copy(REPO / "templates" / "en" / f"reminder-1.{part}", folder / f"reminder-1.{part}")
    shop.configure(templates=str(tmp_path / "templates"))
    shop.add(cart("c1", locale="de-AT"))
    assert _preview_error(shop) == (
        "de/reminder-1.html: no such file: the de folder has reminder-1.subject.txt, so its customers get "
        "every part of reminder-1 from there (add de/reminder-1.html)")
