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


def _source_lines(shop, url):
    """A prestashop source on ``url``: the run's error line and doctor's source check (both exit
    3), which must say the same."""
    shop.configure(source={"type": "prestashop", "url": url})
    result = shop.cli("run", "--json")
    assert result.exit_code == 3, result.output
    doctor = shop.cli("doctor", "--json", now=None)
    assert doctor.exit_code == 3, doctor.output
    return (result.json["error"]["message"],
            next(check["detail"] for check in doctor.json["checks"] if check["name"] == "source"))


@pytest.mark.mariadb
def test_an_account_without_rights_on_the_mariadb_database_is_not_called_a_wrong_password(shop):
    """MariaDB refuses a right password of an account granted nothing on the database (1044,
    "Access denied for user … to database …"): the line said "wrong user or password", and the
    owner changed a password that was right instead of granting SELECT."""
    with shopdb.shop_database("mariadb", "norights") as db:
        db.schema("prestashop", prefix="ps_")
        url = db.read_only_user(refused=sorted(sa_tables(db)))
        for line in _source_lines(shop, url):
            assert "wrong user or password" not in line, line
            assert f"{shop.config_path}: source.url: cannot log in to mysql database {db.name}" in line, line
            assert "the account has no rights on this database" in line, line


@pytest.mark.postgres
def test_an_account_without_connect_on_the_postgres_database_names_source_url_and_connect(shop):
    """PostgreSQL refuses a role without CONNECT on the database at login: the line was a cut
    driver message with "needs SELECT on the shop's tables", without the config key."""
    with shopdb.shop_database("postgres", "noconnect") as db:
        db.schema("prestashop", prefix="ps_")
        url = db.read_only_user()
        user = db.users[-1]
        db.execute(f'REVOKE CONNECT ON DATABASE "{db.name}" FROM PUBLIC')
        db.execute(f'REVOKE CONNECT ON DATABASE "{db.name}" FROM {user}')
        for line in _source_lines(shop, url):
            assert f"{shop.config_path}: source.url: cannot log in to postgresql database {db.name}" in line, line
            assert "the account has no rights on this database (it needs CONNECT" in line, line


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_table_the_account_may_not_read_names_the_config_file_source_url_and_the_table(shop, kind):
    """An account refused one table (``ps_currency``) stops the run naming the table and, as a
    failed login does, the config file and ``source.url`` (the account to grant is the one in that
    URL); MariaDB's line carried the driver's raw ``(1142, "…")`` tuple."""
    with shopdb.shop_database(kind, "refused") as db:
        db.schema("prestashop", prefix="ps_")
        db.insert("ps_shop", [{"id_shop": 1, "id_shop_group": 1, "name": "Shop", "active": 1, "deleted": 0}])
        url = db.read_only_user(refused=["ps_currency"])
        for line in _source_lines(shop, url):
            assert f"{shop.config_path}: source.url: permission denied in" in line, line
            assert "ps_currency" in line, line
            assert "(1142" not in line, line


def sa_tables(db):
    import sqlalchemy as sa

    return sa.inspect(db.admin).get_table_names()
