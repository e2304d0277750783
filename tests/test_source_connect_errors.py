"""A shop database that is down, or refuses the account, stops a cron run with exit 3 and one
line that names the config file and the key to fix (``cartrescue.yaml: source.url``), as the
ledger's line names ``ledger.url`` and the timeout's line names ``source.url``: with several
shops on one host, "cannot connect to mysql database shop at 127.0.0.1:3306" said neither
which config nor which key, and the password may come from a ``${VAR}`` of the cron line."""

from __future__ import annotations

import pytest

import shopdb


@pytest.mark.parametrize("source_type", ["magento2", "woocommerce"])
def test_a_shop_database_that_is_down_names_the_config_file_and_source_url(shop, source_type):
    shop.configure(source={"type": source_type, "url": "mysql+pymysql://cartrescue@127.0.0.1:1/magento"})
    run = shop.cli("run", "--json")
    assert run.exit_code == 3, run.output
    doctor = shop.cli("doctor", "--json", now=None)
    assert doctor.exit_code == 3, doctor.output
    for line in (run.json["error"]["message"], run.stderr,
                 next(check["detail"] for check in doctor.json["checks"] if check["name"] == "source")):
        assert "connection refused" in line, line
        assert f"source: {shop.config_path}: source.url: cannot connect to mysql database magento" in line, line


@pytest.mark.mariadb
def test_a_wrong_password_names_the_config_file_and_source_url(shop, monkeypatch):
    with shopdb.shop_database("mariadb", "password") as db:
        db.schema("woocommerce", prefix="wp_")
        good = db.read_only_user()
        password = good.split(":")[2].split("@")[0]
        monkeypatch.setenv("SHOP_DB_PASSWORD", "wrong-password")
        shop.configure(source={"type": "woocommerce", "url": good.replace(password, "${SHOP_DB_PASSWORD}")})
        result = shop.cli("run", "--json")
    assert result.exit_code == 3, result.output
    message = result.json["error"]["message"]
    assert "access denied (wrong user or password)" in message
    assert "cartrescue.yaml: source.url" in message, message
    assert "wrong-password" not in result.stdout + result.stderr
