"""A run's stderr console is made when it has something to say (commands/common.py,
``FirstUseConsole``): a ``--json`` run with nothing to say never imports ``rich.console``; one
with a warning or a bad row still says it."""

from __future__ import annotations

import subprocess
import sys

from conftest import NOW, REPO, Shop, cart, iso

#: Runs the CLI in this interpreter and says on its last stderr line whether rich.console was imported.
_PROBE = ("import runpy, sys\n"
          "sys.argv = ['cartrescue', *sys.argv[1:]]\n"
          "try:\n"
          "    runpy.run_module('cartrescue', run_name='__main__')\n"
          "except SystemExit:\n"
          "    pass\n"
          "print('rich.console imported:', 'rich.console' in sys.modules, file=sys.stderr)\n")


def _run(shop: Shop, *args: str) -> subprocess.CompletedProcess[str]:
    config = shop.write()
    return subprocess.run([sys.executable, "-c", _PROBE, "run", "--json", "--workers", "1", "--config", str(config),
                           "--now", iso(NOW), *args], cwd=REPO, capture_output=True, text=True, check=False)


def test_a_json_run_with_nothing_to_say_never_imports_the_console(shop: Shop) -> None:
    shop.add(cart("c1"))
    done = _run(shop)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == ["rich.console imported: False"]
    assert '"counts"' in done.stdout


def test_a_json_run_with_a_warning_says_it_on_stderr(shop: Shop) -> None:
    shop.add(cart("c1")).configure(sms={"sender": "Shop"})
    done = _run(shop)
    assert done.returncode == 0, done.stderr
    assert f"warning: {shop.config_path}: sms.sender: ignored" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "rich.console imported: True"


def test_a_json_run_with_a_bad_row_says_it_on_stderr(shop: Shop) -> None:
    shop.add(cart("c1"), cart("c2", email="not an address"))
    done = _run(shop)
    assert "warning:" in done.stderr and "c2" in done.stderr, done.stderr
