"""WooCommerce (CartFlows) rows whose serialized PHP holds text that is not UTF-8, on the real
MariaDB and PostgreSQL servers: a binary column (a ``LONGBLOB`` or ``bytea`` left by a charset
conversion) gives the bytes as the site wrote them, and a site on WordPress's old ``latin1``
connection wrote Windows-1252 ones."""

from __future__ import annotations

import phpserialize
import pytest

import shopdb
from conftest import cli
from test_source_woocommerce import abandonment, php_cart

NOW = "2026-03-02T12:00:00Z"
BINARY = {"mariadb": "LONGBLOB", "postgres": "bytea"}


def fill(db: shopdb.ShopDb) -> None:
    db.schema("woocommerce", prefix="wp_")
    for column in ("cart_contents", "other_fields"):
        db.retype("wp_cartflows_ca_cart_abandonment", column, BINARY[db.kind])
    fields = phpserialize.dumps({"wcf_first_name": "Åsa", "wcf_last_name": "Ström"}, charset="cp1252")
    row = abandonment(1, "asa@example.com", "2026-03-02 10:00:00", None, "12.50")
    db.insert("wp_cartflows_ca_cart_abandonment", [{
        **row, "other_fields": fields, "cart_contents": php_cart((50, 0, 1, 10.0), nul=db.kind == "mariadb").encode()}])
    db.insert("wp_posts", [{"ID": 50, "post_title": "Mug", "post_type": "product", "post_parent": 0}])
    db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "SEK"},
                             {"option_name": "timezone_string", "option_value": "Europe/Stockholm"},
                             {"option_name": "wcf_ca_gdpr_status", "option_value": "on"}])


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
