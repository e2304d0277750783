"""What the shop's database says of a query it refuses reaches the developer whole.

The line was cut at 200 characters: MariaDB's syntax error spends 140 of them on "You have an
error in your SQL syntax; check the manual …", so the statement it quotes (``near '…'``) was cut
in the middle and its line number lost; PostgreSQL's ``HINT:`` was cut mid-sentence.
"""

from __future__ import annotations

import pytest

import shopdb

#: A carts query whose fault a server describes at length, past the first 200 characters.
BROKEN = {
    "mariadb": ("SELECT c.id AS cart_id, c.email, c.created AS created_at, c.updated AS updated_at "
                "FORM carts_of_the_shop c WHERE c.updated >= :start AND c.updated <= :end"),
    "postgres": ("SELECT c.id AS cart_id, lower(c.id) AS email, c.created AS created_at, c.updated AS updated_at "
                 "FROM carts c WHERE c.updated >= :start AND c.updated <= :end"),
}
#: The end of what each server says of it, which the line must still hold.
SAID_LAST = {
    "mariadb": "near 'FORM carts_of_the_shop c WHERE c.updated >=",
    "postgres": "HINT: No function matches the given name and argument types. You might need to add explicit type casts.",
}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_query_the_database_refuses_is_explained_in_its_whole_words(shop, kind):
    with shopdb.shop_database(kind, "ledgersmallsql") as db:
        db.execute("CREATE TABLE carts (id integer, email varchar(100), created timestamp NULL, updated timestamp NULL)")
        shop.configure(source={"type": "sql", "url": db.url, "queries": {"carts": BROKEN[kind]}})
        result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    line = result.json["error"]["message"]
    assert "source.queries.carts: database error in" in line, line
    assert SAID_LAST[kind] in line, line
    assert ("' at line 1" if kind == "mariadb" else "casts. (fix the query") in line, line
    assert "^" not in line, line  # PostgreSQL's caret, which points at nothing in one line
