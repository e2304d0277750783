"""`preview --screenshot`: a PNG of the email's HTML part, as headless Chromium shows it.

The browser tests need Debian's ``chromium`` (`.ci/run` installs it); without it they skip with
the reason, unless ``CARTRESCUE_REQUIRE_SERVICES=1`` makes that a failure. The PNG is read with
``zlib`` and ``struct`` only.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

from cartrescue.screenshot import screenshot
from conftest import NOW, Shop, cart, iso


def read_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of raw pixel bytes, bytes per pixel) of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, header, chunks = 8, None, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[position + 8 + length:position + 12 + length])[0]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    assert header is not None
    width, height, depth, color, _compression, _filter, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, previous))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + (((line[i - bpp] if i >= bpp else 0) + previous[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], (previous[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, rows, bpp


def picture_stats(rows: list[bytes], bpp: int) -> dict[str, float]:
    """Luminance variance, the share of pixels unlike the background, and the number of colours."""
    colours: Counter[bytes] = Counter()
    total = count = 0.0
    squares = 0.0
    for row in rows:
        for x in range(0, len(row), bpp):
            pixel = row[x:x + 3]
            colours[pixel] += 1
            luma = 0.299 * pixel[0] + 0.587 * pixel[1] + 0.114 * pixel[2]
            total += luma
            squares += luma * luma
            count += 1
    mean = total / count
    background = colours.most_common(1)[0][0]
    unlike = sum(n for colour, n in colours.items()
                 if max(abs(a - b) for a, b in zip(colour, background)) > 32)
    return {"variance": squares / count - mean * mean, "foreground": unlike / count, "colours": len(colours)}


def looks_blank(stats: dict[str, float]) -> bool:
    return stats["variance"] < 50 or stats["foreground"] < 0.01 or stats["colours"] < 16


@pytest.mark.browser
@pytest.mark.slow
def test_preview_screenshot_is_a_png_of_the_asked_size_showing_the_message(shop: Shop, chromium: str,
                                                                            tmp_path: Path) -> None:
    shop.add(cart("c1", items=(("LAMP", "Desk lamp with a very long name", 2, "49.90"), ("MUG", "Blue mug", 1, "12.00"))))
    target = tmp_path / "shots" / "c1.png"
    result = shop.cli("preview", "c1", "--step", "1", "--screenshot", str(target), "--window-size", "640x900", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["screenshot"] == str(target)
    width, height, rows, bpp = read_png(target.read_bytes())
    assert (width, height) == (640, 900)
    stats = picture_stats(rows, bpp)
    assert not looks_blank(stats), stats
    # The email's own colours are there: the page background (#f4f4f5) and the white card (#ffffff).
    colours = {row[x:x + 3] for row in rows[::10] for x in range(0, len(row), bpp * 10)}
    assert bytes((0xF4, 0xF4, 0xF5)) in colours and bytes((0xFF, 0xFF, 0xFF)) in colours


@pytest.mark.browser
@pytest.mark.slow
def test_the_blank_check_itself_tells_an_empty_page_from_a_message(chromium: str, tmp_path: Path) -> None:
    empty = screenshot("<!DOCTYPE html><html><body></body></html>", tmp_path / "empty.png", size=(320, 240),
                       chromium=chromium)
    width, height, rows, bpp = read_png(empty.read_bytes())
    assert (width, height) == (320, 240) and looks_blank(picture_stats(rows, bpp))
    text = screenshot("<!DOCTYPE html><html><body style='font:24px sans-serif'><h1>Your cart</h1><p>Lamp × 2"
                      "</p><p style='background:#1d4ed8;color:#fff;padding:12px'>Complete your order</p></body></html>",
                      tmp_path / "text.png", size=(320, 240), chromium=chromium)
    assert not looks_blank(picture_stats(*read_png(text.read_bytes())[2:]))


def test_a_missing_browser_is_one_clear_error(shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTRESCUE_CHROMIUM", str(tmp_path / "no-such-browser"))
    shop.add(cart("c1"))
    target = tmp_path / "c1.png"
    result = shop.cli("preview", "c1", "--screenshot", str(target))
    assert result.exit_code == 1
    assert "headless Chromium not found" in result.stderr and "apt-get install -y chromium" in result.stderr
    assert not target.exists()


def test_a_browser_that_fails_is_reported_with_its_exit_code(shop: Shop, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTRESCUE_CHROMIUM", "/bin/false")
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--screenshot", str(tmp_path / "c1.png"))
    assert result.exit_code == 1 and "exited with 1 and wrote no screenshot" in result.stderr


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux's setpriv (to be refused as a user is)")
def test_a_screenshot_into_a_folder_that_cannot_be_written_is_a_usage_error(shop: Shop, tmp_path: Path) -> None:
    """As ``--html`` into that folder is: exit 2 naming the option. It was exit 1, the browser's
    "wrote no screenshot". A stand-in browser writes where it is told; the command runs without
    the capability to write anywhere (root here), as a user without the permission is refused."""
    browser = tmp_path / "browser"
    browser.write_text('#!/bin/sh\nfor a; do case "$a" in --screenshot=*) printf PNG > "${a#--screenshot=}";; esac; done\n',
                       encoding="utf-8")
    browser.chmod(0o755)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    shop.add(cart("c1"))
    shop.write()
    done = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m",
                           "cartrescue.cli", "preview", "c1", "--screenshot", str(locked / "c1.png"), "--json",
                           "--config", str(shop.config_path), "--now", iso(NOW)],
                          env=dict(os.environ, CARTRESCUE_CHROMIUM=str(browser)), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["error"]["message"].startswith(f"--screenshot {locked / 'c1.png'}: cannot write")


@pytest.mark.parametrize("size,message", [("50x50", "each side must be 100 to 10000"), ("wide", "like 800x1200")])
def test_a_bad_window_size_is_a_usage_error(shop: Shop, tmp_path: Path, size: str, message: str) -> None:
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--screenshot", str(tmp_path / "c1.png"), "--window-size", size)
    assert result.exit_code == 2 and message in result.stderr


def test_a_browser_variable_naming_nothing_says_so(shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It said "… or set CARTRESCUE_CHROMIUM to the browser" to a developer who had set it (to a
    path mistyped, or of another machine): the variable and its value are named now."""
    missing = tmp_path / "no-such-browser"
    monkeypatch.setenv("CARTRESCUE_CHROMIUM", str(missing))
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--screenshot", str(tmp_path / "c1.png"))
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert f"CARTRESCUE_CHROMIUM={missing}: no such file, nor a program of that name on the PATH" in said, said
    assert "or set CARTRESCUE_CHROMIUM" not in said
