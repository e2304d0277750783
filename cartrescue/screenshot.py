"""Screenshots of a message's HTML part in headless Chromium, as a recipient would see it.

Owns finding the browser (``$CARTRESCUE_CHROMIUM``, else Debian's ``chromium`` on the PATH),
running it once per screenshot in a throw-away profile with everything that phones home turned
off, and turning its failures into one clear :class:`ScreenshotError`. It must not render
templates (it gets finished HTML) nor decide anything about carts.

Debian: ``apt-get install -y chromium``. The page is loaded from a temporary file; remote
images load when the machine has network access and show as broken images when it has not.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from cartrescue import private
from cartrescue.errors import CartrescueError, ConfigError, ExitCode

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DEFAULT_SIZE = (800, 1200)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
)
_NOISE = ("dbus", "Fontconfig", "unexpected operator", "Failed to connect to the bus", "bytes written to file")


class ScreenshotError(CartrescueError):
    exit_code = ExitCode.SOME_FAILED


def find_chromium() -> str | None:
    """``$CARTRESCUE_CHROMIUM`` if set, else the first of chromium / google-chrome on the PATH."""
    configured = os.environ.get("CARTRESCUE_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else shutil.which(configured)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def parse_size(text: str) -> tuple[int, int]:
    """``"800x1200"`` -> ``(800, 1200)``; each side 100..10000 pixels (else a usage error)."""
    try:
        width, height = (int(part) for part in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise ConfigError(f"--window-size: expected a size like 800x1200, got {text!r}") from None
    if not (100 <= width <= 10000 and 100 <= height <= 10000):
        raise ConfigError(f"--window-size {width}x{height}: each side must be 100 to 10000 pixels")
    return width, height


def screenshot(html: str, out: Path, *, size: tuple[int, int] = DEFAULT_SIZE, chromium: str | None = None,
               timeout: float = 60.0, net_log: Path | None = None) -> Path:
    """Render ``html`` in headless Chromium and write a PNG of ``size`` (width, height) to ``out``.

    ``net_log``: also write Chromium's network log (JSON) there, to see every request the page made.
    """
    binary = chromium or find_chromium()
    configured = os.environ.get("CARTRESCUE_CHROMIUM")
    if binary is None and configured:  # set, to a path mistyped or of another machine: not "set it"
        raise ScreenshotError(f"headless Chromium not found: CARTRESCUE_CHROMIUM={configured}: no such file, nor a "
                              "program of that name on the PATH (point it at a Chrome/Chromium binary, or unset it "
                              "and apt-get install -y chromium)")
    if binary is None:
        raise ScreenshotError("headless Chromium not found: install Debian's chromium package "
                              "(apt-get install -y chromium) or set CARTRESCUE_CHROMIUM to the browser")
    target = out.expanduser().resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"--screenshot {out}: cannot write: {exc.strerror or exc}") from None
    width, height = size
    with tempfile.TemporaryDirectory(prefix="cartrescue-shot-") as folder:
        page = Path(folder) / "message.html"
        page.write_text(html, encoding="utf-8")
        profile = Path(folder) / "profile"
        profile.mkdir()
        # The browser writes into this private folder, and the picture is copied to ``out``
        # after: a target that cannot be written is then the option's error (exit 2), as for
        # --html, not the browser's "wrote no screenshot"; and no half-written file is left there.
        shot = Path(folder) / "screenshot.png"
        command = [binary, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                   f"--window-size={width},{height}",
                   *([f"--log-net-log={net_log.expanduser().resolve()}"] if net_log is not None else []), page.as_uri()]
        env = dict(os.environ, HOME=folder)  # Chromium writes caches under $HOME
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            raise ScreenshotError(f"cannot start {binary}: {exc.strerror or exc}") from None
        try:
            _stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise ScreenshotError(f"{binary} took longer than {timeout:g}s; no screenshot") from None
        finally:
            _kill_group(process)  # the browser's helper processes, should any outlive it
        if process.returncode != 0 or not shot.is_file() or shot.stat().st_size == 0:
            raise ScreenshotError(f"{binary} exited with {process.returncode} and wrote no screenshot: "
                                  f"{_reason(stderr)}")
        try:
            with open(target, "wb", opener=private.opener) as picture:  # a customer's message
                picture.write(shot.read_bytes())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise  # no room: the command's OutputError (exit 1), as for its other output
            raise ConfigError(f"--screenshot {out}: cannot write: {exc.strerror or exc}") from None
    return target


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=5)


def _reason(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    useful = [line for line in lines if not any(noise in line for noise in _NOISE)]
    return (useful or lines or ["no output"])[-1][:300]
