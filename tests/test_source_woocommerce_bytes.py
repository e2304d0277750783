"""WooCommerce (CartFlows) rows whose serialized PHP is not byte for byte what PHP wrote as
WordPress reads it, on the real MariaDB and PostgreSQL servers:

* text that is not UTF-8: a binary column (a ``LONGBLOB`` or ``bytea`` left by a charset
  conversion) gives the bytes as the site wrote them, and a site on WordPress's old ``latin1``
  connection wrote Windows-1252 ones (tables ``wp_``);
* a copy without NUL bytes: every CartFlows cart holds WooCommerce's product objects, serialized
  with their protected ``id`` as ``\\0*\\0id``; PostgreSQL text cannot hold the NUL byte, so a copy
  (pgloader's ``remove-null-characters``) keeps ``*id`` under the length PHP wrote (tables ``copy_``).
"""

from __future__ import annotations

import phpserialize
import pytest

import shopdb
from conftest import cli
from test_source_woocommerce import abandonment, php_cart

NOW = "2026-03-02T12:00:00Z"
AT = "2026-03-02 10:00:00"
BINARY = {"mariadb": "LONGBLOB", "postgres": "bytea"}
COPY = "copy_"


def shop_tables(db: shopdb.ShopDb, prefix: str) -> None:
    """The tables of one site, with a mug and a hoodie in its catalogue."""
    db.schema("woocommerce", prefix=prefix)
    db.insert(f"{prefix}posts", [{"ID": 50, "post_title": "Mug", "post_type": "product", "post_parent": 0},
                                 {"ID": 60, "post_title": "Hoodie", "post_type": "product", "post_parent": 0},
                                 {"ID": 61, "post_title": "Hoodie - L", "post_type": "product_variation",
                                  "post_parent": 60}])
    db.insert(f"{prefix}options", [{"option_name": "woocommerce_currency", "option_value": "SEK"},
                                   {"option_name": "timezone_string", "option_value": "Europe/Stockholm"},
                                   {"option_name": "wcf_ca_gdpr_status", "option_value": "on"}])


def fill(db: shopdb.ShopDb) -> None:
    shop_tables(db, "wp_")
    for column in ("cart_contents", "other_fields"):
        db.retype("wp_cartflows_ca_cart_abandonment", column, BINARY[db.kind])
    fields = phpserialize.dumps({"wcf_first_name": "Åsa", "wcf_last_name": "Ström"}, charset="cp1252")
    contents = php_cart((50, 0, 1, 10.0), nul=db.kind == "mariadb").encode()
    db.insert("wp_cartflows_ca_cart_abandonment", [
        {**abandonment(1, "asa@example.com", AT, None, "12.50"), "other_fields": fields, "cart_contents": contents}])
    shop_tables(db, COPY)
    copied = php_cart((50, 0, 2, 25.0), (60, 61, 1, 45.0), nul=True).replace("\0", "")
    db.insert(f"{COPY}cartflows_ca_cart_abandonment", [abandonment(1, "copy@example.com", AT, copied, "87.50")])


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("woocommerce")
    with shopdb.configured(request.param, "woobytes", fill, folder, {"type": "woocommerce"}) as found:
        yield found


def test_a_name_in_windows_1252_bytes_is_read_as_the_letters_it_holds(shop):
    """``Åsa`` stored as the byte C5 was read as a lone surrogate: the preview greeted
    ``\\udcc5sa`` and the reminder sent said ``Hi ?sa`` in its subject and text."""
    _, config = shop
    result = cli("preview", "1", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert "Hi Åsa," in result.json["text"]


def test_a_cart_whose_copy_lost_the_nul_bytes_of_its_objects_is_read(shop, tmp_path):
    """Each such cart was ``cart_contents: not valid serialized PHP``: a copy on PostgreSQL read
    not one cart of the shop."""
    db, _ = shop
    config = shopdb.write_config(tmp_path, {"type": "woocommerce", "url": db.url, "prefix": COPY})
    result, decisions = shopdb.plan(config, NOW)
    assert result.json["problems"] == []
    assert (decisions["1"]["action"], decisions["1"]["reason"], decisions["1"]["total"]) == ("send", "due", "87.50")
