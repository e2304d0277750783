"""How a finished command leaves its process: quickly, and without skipping what exit owes.

``cli.main`` freezes the objects a run allocated out of the interpreter's final collections
(they cost ~80 ms of a 100,000-cart run, freeing nothing reference counting would not). That
must not turn into an exit that skips work: exit functions run, and the SQLite ledger is
closed (its write-ahead log folded back and removed), as after an ordinary exit.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import NOW, Shop, cart, iso

# The console script's own entry point, with one exit function of a library registered before it.
WITH_AN_EXIT_FUNCTION = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("exit functions ran\\n"))
sys.argv = ["cartrescue", *sys.argv[1:]]
from cartrescue.cli import main
main()
"""


def test_a_finished_run_still_runs_exit_functions_and_closes_its_ledger(shop: Shop) -> None:
    shop.add(cart("c-1", email="ann@example.com"), cart("c-2", email="bob@example.com"))
    shop.write()
    outbox = shop.folder / "out"
    result = subprocess.run(
        [sys.executable, "-c", WITH_AN_EXIT_FUNCTION, "run", "--outbox", str(outbox), "--quiet",
         "--config", str(shop.config_path), "--now", iso(NOW)],
        check=False, cwd=shop.folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "exit functions ran"
    assert len(list(outbox.glob("*.eml"))) == 2
    ledger = shop.folder / "ledger.db"
    assert ledger.exists()
    assert not ledger.with_name("ledger.db-wal").exists()  # closed: an os._exit would leave it
