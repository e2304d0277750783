"""cartrescue as users get it: a wheel in a fresh venv, run from a folder outside the checkout.

A suite that only runs from the checkout once shipped a package that could not send a single
message (the shipped templates were not found in a wheel). Here the wheel is built from this
checkout, installed non-editable with today's releases of its dependencies, and the README's
first steps are run with the installed command: ``--version``, ``init``, ``templates check``,
and ``run --outbox`` on the demo shop, which must deliver with zero failures; ``run-all`` forks
each shop's run from the installed command.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def _run(*command: str | Path, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def installed_base(config: pytest.Config) -> Path:
    """The run's one build folder: in the common temporary folder of the xdist workers (or the
    session's own without xdist)."""
    root = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]  # the fixture's factory
    return (root.parent if hasattr(config, "workerinput") else root) / "installed"


def start_building(base: Path) -> None:
    """Start the build in a process of its own as the tests are collected (conftest calls this
    when a collected test uses :func:`installed`), so that it is done by the time one needs it:
    before, the workers that reached these tests together each waited the whole build (over two
    minutes a worker on a loaded machine) with nothing to run. The process holds the build's lock
    until it ends; one already started, or done, is not started again. Should it fail, the
    fixture builds again in the test and its assertion says why."""
    base.mkdir(parents=True, exist_ok=True)
    lock = os.open(base / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another worker's build holds it
        if (base / "ready").exists() or (base / "started").exists():
            return
        (base / "started").touch()
        with (base / "build.log").open("w") as log:
            subprocess.Popen([sys.executable, __file__, str(base)], cwd=base, pass_fds=(lock,), stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        os.close(lock)  # the build's process keeps the lock (the same open file) until it ends


@pytest.fixture(scope="session")
def installed(pytestconfig: pytest.Config) -> tuple[Path, Path]:
    """(the wheel, the venv's cartrescue command), built once per suite run.

    Building and installing take most of a minute, and pytest-xdist may run these tests on
    different workers (its ``xdist_group`` mark does not group with pytest 9.2, which no longer
    reads the ``_nodeid`` xdist rewrites). So the workers share one build in the run's common
    temporary folder, started as the tests are collected (:func:`start_building`): the lock's
    holder builds it, the others wait and reuse it."""
    base = installed_base(pytestconfig)
    base.mkdir(exist_ok=True)
    with (base / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = base / "ready"
        if not ready.exists():
            _build_and_install(base)
            ready.touch()
    wheel = next((base / "dist").glob("cartrescue-*.whl"))
    return wheel, base / "venv" / "bin" / "cartrescue"


LEFTOVERS = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache",
             ".hypothesis", ".ruff_cache", "*.pyc", "*.db", "outbox")


def _clean_copy(source: Path) -> None:
    """A copy of the checkout without its build leftovers: what a clone would build."""
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*LEFTOVERS))


def _build_and_install(base: Path) -> None:
    """A wheel of the checkout as a clone would build it, installed non-editable in a new venv."""
    source = base / "src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(base / "dist", ignore_errors=True)
    shutil.rmtree(base / "venv", ignore_errors=True)
    _clean_copy(source)
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", base / "dist", source, cwd=base)
    assert built.returncode == 0, built.stderr
    wheel = next((base / "dist").glob("cartrescue-*.whl"))
    venv = base / "venv"
    assert _run(sys.executable, "-m", "venv", venv, cwd=base).returncode == 0
    install = _run(venv / "bin" / "pip", "install", "-q", wheel, cwd=base)
    assert install.returncode == 0, install.stderr


def test_the_wheel_carries_every_module_and_template_of_the_checkout(installed: tuple[Path, Path]) -> None:
    wheel, _command = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "cartrescue").rglob("*.py")}
    assert modules - names == set()
    templates = {f"cartrescue/default_templates/{path.relative_to(REPO / 'templates').as_posix()}"
                 for path in (REPO / "templates").rglob("*") if path.is_file()}
    assert templates - names == set()


def test_the_sdist_carries_the_tests_docs_and_examples_the_readme_and_the_suite_need(tmp_path: Path) -> None:
    # setuptools alone packed the package, the README and tests/test*.py: no conftest.py, no
    # helpers or fixtures, no docs/ the README links, no demo config or orders of the quick start.
    source = tmp_path / "src"
    _clean_copy(source)
    built = _run(sys.executable, "-m", "build", "--sdist", "--outdir", tmp_path / "dist", source, cwd=tmp_path)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr
    sdist = next((tmp_path / "dist").glob("cartrescue-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {path.relative_to(source).as_posix() for folder in ("tests", "docs", "examples", "bench")
              for path in (source / folder).rglob("*") if path.is_file()}
    wanted |= {"README.md", "LICENSE", "config.example.yaml", "pyproject.toml", ".ci/run"}
    assert {"tests/conftest.py", "docs/sending.md", "examples/orders.csv"} <= wanted
    assert sorted(wanted - names) == []
    assert not [name for name in names if "__pycache__" in name or name.endswith((".pyc", ".db"))]


def test_the_installed_command_inits_checks_and_delivers_the_demo(installed: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    _wheel, command = installed
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    version = _run(command, "--version", cwd=outside)
    assert version.returncode == 0 and version.stdout.startswith("cartrescue "), version.stderr

    init = _run(command, "init", "shop", cwd=outside)
    assert init.returncode == 0, init.stderr
    config = outside / "shop" / "cartrescue.yaml"
    assert "templates: templates" in config.read_text(encoding="utf-8")
    check = _run(command, "templates", "check", "--config", config, "--json", cwd=outside)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr
    checked = json.loads(check.stdout)
    assert checked["ok"] is True
    # Against the bundled sample's carts too, not only the edge cases: the wheel ships them.
    assert any(not cart.startswith("edge-") for cart in checked["carts"]), checked["carts"]

    counts = _deliver_the_demo(command, outside)
    assert counts["problems"] == 0
    assert len(list((outside / "out").glob("*.eml"))) == counts["deliveries"]["sent"] - _call_list(outside / "demo")


def _deliver_the_demo(command: Path, folder: Path) -> dict[str, Any]:
    """The README's demo shop copied to ``folder/demo`` and run with ``--outbox folder/out``: its
    counts, once the run exited 0 having delivered every message it planned (over 50)."""
    demo = folder / "demo"
    demo.mkdir()
    for name in ("cartrescue.yaml", "carts.csv", "orders.csv"):
        shutil.copy(REPO / "examples" / name, demo / name)
    run = _run(command, "run", "--config", demo / "cartrescue.yaml", "--outbox", folder / "out", "--json", cwd=folder)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    counts: dict[str, Any] = json.loads(run.stdout)["counts"]
    assert counts["failed"] == 0 and counts["sent"] == counts["send"] > 50, counts
    return counts


def test_the_installed_package_runs_as_python_dash_m_with_the_commands_name(installed: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    """A cron line or a container that names only the venv's interpreter: ``python -m cartrescue``."""
    _wheel, command = installed
    python = command.parent / "python"
    version = _run(python, "-m", "cartrescue", "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("cartrescue "), version.stderr
    usage = _run(python, "-m", "cartrescue", "--help", cwd=tmp_path)
    assert usage.returncode == 0 and "python -m cartrescue" in usage.stdout, usage.stdout + usage.stderr


@pytest.mark.parametrize("scheme", ["--target", "--prefix"])
def test_a_wheel_installed_into_a_folder_of_its_own_finds_the_config_and_carts_it_ships(
        installed: tuple[Path, Path], tmp_path: Path, scheme: str) -> None:
    # pip puts the wheel's data files (config.example.yaml, the sample carts) under the folder it
    # installs into; only sys.prefix's and the user's were looked in: `pip install --target DIR`,
    # `--prefix DIR` (and Debian's pip, /usr/local while sys.prefix is /usr) made `init` fail
    # ("config.example.yaml is missing from this installation") and `templates check` skip the sample.
    wheel, _command = installed
    folder = tmp_path / "installed"
    # --ignore-installed: pip --prefix otherwise uninstalls the cartrescue of the environment it
    # runs in (the suite's own: every later test that starts `python -m cartrescue` then failed).
    put = _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", scheme, folder, wheel,
               cwd=tmp_path)
    assert put.returncode == 0, put.stderr
    packages = folder if scheme == "--target" else next(folder.glob("lib/python*/site-packages"))
    # An interpreter whose own prefix holds no copy: a venv that reaches the dependencies through
    # a .pth line, and cartrescue only through PYTHONPATH (as a --target or --prefix install is used).
    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path).returncode == 0
    dependencies = _run(sys.executable, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    own = _run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    Path(own.stdout.strip(), "dependencies.pth").write_text(dependencies.stdout, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(packages), "PYTHONUSERBASE": str(tmp_path / "nobody")}
    python = [venv / "bin" / "python", "-m", "cartrescue"]
    where = subprocess.run([*python[:1], "-c", "import cartrescue; print(cartrescue.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(packages)), where.stdout + where.stderr
    init = subprocess.run([*python, "init", "shop"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert init.returncode == 0, init.stdout + init.stderr
    check = subprocess.run([*python, "templates", "check", "--config", "shop/cartrescue.yaml", "--json"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr
    assert any(not cart.startswith("edge-") for cart in json.loads(check.stdout)["carts"]), check.stdout[-2000:]


def _oldest_allowed() -> list[str]:
    """A pip constraint for each dependency of pyproject.toml pinning the oldest release its range
    allows (its ``>=`` bound), for the platform running the test."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = []
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        lowest = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert lowest, f"{line}: no lower bound to test"
        pins.append(f"{requirement.name}=={lowest[0]}")
    return pins


def test_the_oldest_releases_the_dependency_ranges_allow_run_the_quick_start(installed: tuple[Path, Path],
                                                                              tmp_path: Path) -> None:
    # typer>=0.12 allowed typer 0.12 to 0.15.3, which do not bound click and break with click 8.2
    # and later: with such a typer already in the environment, `cartrescue --help` crashed
    # ("TypeError: Parameter.make_metavar() missing 1 required positional argument: 'ctx'")
    # and `--version` said "Missing command." (exit 2).
    wheel, _command = installed
    constraints = tmp_path / "oldest.txt"
    constraints.write_text("\n".join(_oldest_allowed()) + "\n", encoding="utf-8")
    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    install = _run(venv / "bin" / "pip", "install", "-q", "-c", constraints, wheel, cwd=tmp_path)
    assert install.returncode == 0, install.stderr
    command = venv / "bin" / "cartrescue"
    usage = _run(command, "--help", cwd=tmp_path)
    assert usage.returncode == 0 and "templates" in usage.stdout, usage.stdout + usage.stderr
    version = _run(command, "--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"cartrescue {wheel.name.split('-')[1]}\n"), version.stderr
    assert _run(command, "init", "shop", cwd=tmp_path).returncode == 0
    check = _run(command, "templates", "check", "--config", tmp_path / "shop" / "cartrescue.yaml", "--json",
                 cwd=tmp_path)
    assert check.returncode == 0 and json.loads(check.stdout)["ok"] is True, check.stdout[-2000:] + check.stderr
    _deliver_the_demo(command, tmp_path)


def _call_list(demo: Path) -> int:
    """Rows the demo's call-list tier wrote (they count as delivered, but are not .eml files)."""
    path = demo / "call-list.csv"
    return max(len(path.read_text(encoding="utf-8").splitlines()) - 1, 0) if path.exists() else 0


def test_the_installed_command_runs_many_shops_each_forked_and_reports_each(installed: tuple[Path, Path],
                                                                            tmp_path: Path) -> None:
    _wheel, command = installed
    demo, empty = tmp_path / "demo", tmp_path / "empty"
    demo.mkdir()
    for name in ("cartrescue.yaml", "carts.csv", "orders.csv"):
        shutil.copy(REPO / "examples" / name, demo / name)
    assert _run(command, "init", empty, cwd=tmp_path).returncode == 0  # a config, no export yet
    done = _run(command, "run-all", "--json", demo, empty, cwd=tmp_path)
    assert done.returncode == 3, done.stderr  # the empty shop's source: the worst of the two
    first, second = json.loads(done.stdout)["shops"]
    assert (first["exit_code"], first["started"], first["counts"]["carts"]) == (0, "fork", 300)
    assert second["exit_code"] == 3 and second["error"]["code"] == "source"


def _demo_with(tmp_path: Path, replace: tuple[str, str]) -> Path:
    """The demo shop, its config with one line replaced."""
    demo = tmp_path / "demo"
    demo.mkdir()
    for name in ("cartrescue.yaml", "carts.csv", "orders.csv"):
        shutil.copy(REPO / "examples" / name, demo / name)
    config = demo / "cartrescue.yaml"
    text = config.read_text(encoding="utf-8")
    assert replace[0] in text
    config.write_text(text.replace(replace[0], replace[1]), encoding="utf-8")
    return config


def test_a_plain_install_names_the_extra_a_postgresql_ledger_needs(installed: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    # `pip install cartrescue` brings no PostgreSQL driver: the error said "No module named 'psycopg'".
    _wheel, command = installed
    config = _demo_with(tmp_path, ("url: sqlite:///demo-ledger.db", "url: postgresql://postgres@127.0.0.1/shop"))
    run = _run(command, "run", "--config", config, "--json", cwd=tmp_path)
    error = json.loads(run.stdout)["error"]
    assert (run.returncode, error["code"]) == (2, "config"), run.stdout
    assert "ledger.url" in error["message"]
    assert "pip install 'cartrescue[postgres]'" in error["message"], error["message"]


def test_a_plain_install_names_the_extra_a_mariadb_shop_needs(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _wheel, command = installed
    config = _demo_with(tmp_path, (
        "  type: csv\n  carts: carts.csv\n  orders: orders.csv\n", "  type: magento2\n  url: mysql+pymysql://root@127.0.0.1/shop\n"))
    run = _run(command, "run", "--config", config, "--json", cwd=tmp_path)
    error = json.loads(run.stdout)["error"]
    assert (run.returncode, error["code"]) == (3, "source"), run.stdout
    assert "pip install 'cartrescue[mysql]'" in error["message"], error["message"]


if __name__ == "__main__":  # start_building's process: python test_installed.py BASE
    _build_and_install(Path(sys.argv[1]))
    (Path(sys.argv[1]) / "ready").touch()
