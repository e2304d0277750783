"""The relay's host and the name cartrescue gives in EHLO are checked when the config loads.

A host written with its port, or empty, and an EHLO name with a space were taken: every message
of every run then failed ``failed_transient`` at the relay's door, retried for ever; an EHLO name
in another script (``mail.bücher.example``) stopped each sending run with an internal error
(exit 70). The run goes to a real aiosmtpd on loopback (:class:`smtpserver.LoopbackSMTP`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from smtpserver import LoopbackSMTP

from conftest import Shop, cart, cli


def _config(tmp_path: Path, smtp: str) -> Path:
    path = tmp_path / "cartrescue.yaml"
    path.write_text("source: {type: csv, carts: carts.csv}\n"
                    "smtp:\n"
                    "  security: starttls\n"
                    f"{smtp}\n", encoding="utf-8")
    return path


def _refusal(path: Path) -> str:
    result = cli("carts", "--json", "--config", str(path))
    assert result.exit_code == 2, result.output
    return str(result.json["error"]["message"])


@pytest.mark.parametrize("host", ["smtp.example.com:587", "smtp.example.com:465"])
def test_an_smtp_host_written_with_its_port_is_refused_naming_the_key_and_line(tmp_path: Path, host: str) -> None:
    path = _config(tmp_path, f"  host: '{host}'")
    assert _refusal(path) == (f"{path}: smtp.host: the port goes under smtp.port, not in the host name: write "
                              f"host: smtp.example.com and port: {host.rpartition(':')[2]} (line 4)")


@pytest.mark.parametrize("host", ["", "  ", "smtp.example .com", "smtp://smtp.example.com"])
def test_an_smtp_host_that_is_no_host_name_is_refused_naming_the_key_and_line(tmp_path: Path, host: str) -> None:
    path = _config(tmp_path, f"  host: '{host}'")
    message = _refusal(path)
    assert message.startswith(f"{path}: smtp.host: expected the relay's host name or address, like "
                              f"smtp.example.com or 192.0.2.25, got {host!r}"), message
    assert message.endswith(" (line 4)")


def test_an_ehlo_name_with_a_space_is_refused_naming_the_key_and_line(tmp_path: Path) -> None:
    path = _config(tmp_path, "  helo_name: 'mail shop.example'")
    assert _refusal(path) == (f"{path}: smtp.helo_name: expected a host name like mail.shop.example (or an "
                              "address in brackets, [192.0.2.25]), got 'mail shop.example' (line 4)")


def test_an_empty_ehlo_name_still_means_the_default(tmp_path: Path) -> None:
    path = _config(tmp_path, "  helo_name: ''")
    assert cli("carts", "--json", "--config", str(path)).exit_code != 2


@pytest.mark.smtp
def test_an_ehlo_name_in_another_script_goes_to_the_relay_in_its_idna_form(shop: Shop) -> None:
    shop.add(cart("c1"))
    with LoopbackSMTP("none") as server:
        shop.configure(smtp=server.smtp_config(helo_name="mail.bücher.example"))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        received = server.wait_for(1)
    assert [message.helo for message in received] == ["mail.xn--bcher-kva.example"]
