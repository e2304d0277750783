"""Compiled templates kept between runs, so that a cron run compiles only what changed.

Jinja turns each template file into Python code the first time a process renders it: some
milliseconds a file, a step's three parts with the layout and macros in every locale a run
meets, again in every worker of every run (~2 % of B2's CPU). Jinja's bytecode cache keeps that
code in files; a later run loads a template instead of compiling it. A file is used only while
the template's source is unchanged (Jinja compares a checksum of the source), and only for
the same Jinja, Python, cartrescue and environment settings, and the same source of the modules
that define the environment and its code generator (:func:`_salt`): the version number alone
does not change between two builds of one release, nor in a checkout being worked on.

That code runs outside the sandbox, so the folder must be this user's own: created ``0700``,
and used only if it is a real folder owned by this user that nobody else can write (what Jinja
checks for its own default folder). Otherwise, or when anything about the cache fails (a full
disk, a damaged file), templates are compiled as without it: the cache never fails a render.

Where: ``$CARTRESCUE_CACHE_DIR/templates`` if that is set (empty: no cache), else
``$XDG_CACHE_HOME/cartrescue/templates``, else ``~/.cache/cartrescue/templates``; none at all if
there is no home folder to put it in (none set, or one that does not exist: ``HOME=/nonexistent``).
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CACHE_ENV = "CARTRESCUE_CACHE_DIR"


def cache_folder(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where compiled templates are kept (None: the cache is turned off)."""
    chosen = environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen).expanduser() / "templates" if chosen.strip() else None
    base = environ.get("XDG_CACHE_HOME") or ""
    if os.path.isabs(base):
        return Path(base) / "cartrescue" / "templates"
    home = os.path.expanduser("~")  # the XDG spec ignores a relative XDG_CACHE_HOME
    if not os.path.isabs(home) or home == os.sep:  # HOME unknown ("~") or empty ("/"): a bare cron or container
        return None
    if not os.path.isdir(home):  # a service user's HOME=/nonexistent: never made (as root it could be)
        return None
    return Path(home) / ".cache" / "cartrescue" / "templates"


def private_folder(folder: Path) -> Path | None:
    """``folder``, created ``0700`` if missing, if it is a folder of this user that no one else
    can write; None otherwise (or if it cannot be made)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o022:
        return None
    return folder


def bytecode_cache(env: Any, environ: Mapping[str, str] = os.environ) -> Any | None:
    """A bytecode cache for ``env`` (a configured Jinja environment), or None where there is no
    safe folder for one."""
    folder = cache_folder(environ)
    folder = private_folder(folder) if folder is not None else None
    if folder is None:
        return None
    return _cache_class()(folder, _salt(env))


def _salt(env: Any) -> str:
    """What else the compiled code depends on: the code Jinja generates differs with its version
    and the environment's settings, and a filter or test that is gone must fail at compile time."""
    import jinja2

    from cartrescue import __version__

    return "\0".join([
        jinja2.__version__, __version__, type(env).__qualname__, env.code_generator_class.__qualname__,
        _source_digest(type(env), env.code_generator_class),
        repr((env.trim_blocks, env.lstrip_blocks, env.keep_trailing_newline, env.newline_sequence,
              env.optimized, sorted(env.extensions), env.finalize is not None,
              sorted(getattr(env, "intercepted_binops", ())), sorted(getattr(env, "intercepted_unops", ())))),
        ",".join(sorted(env.filters)), ",".join(sorted(env.tests)),
    ])


def _source_digest(*classes: type[Any]) -> str:
    """A digest of the files that define ``classes``: the code a template compiles to is what
    their methods write, so a change to them (an upgrade that kept the version number, a
    checkout) compiles again instead of loading code an older generator wrote. A class without
    a file (built-in, made at run time) counts by its name alone."""
    digest = hashlib.sha256()
    for module in dict.fromkeys(cls.__module__ for cls in classes):
        path = module_file(module)
        try:
            digest.update(Path(path).read_bytes() if path else module.encode())
        except OSError:
            digest.update(module.encode())
    return digest.hexdigest()


def module_file(module: str) -> str | None:
    """The file an imported module was loaded from (None: none)."""
    return getattr(sys.modules.get(module), "__file__", None)


def _cache_class() -> type[Any]:
    from jinja2.bccache import Bucket, FileSystemBytecodeCache

    class TemplateCache(FileSystemBytecodeCache):
        """Jinja's file cache, keyed by :func:`_salt` too, that never fails a render."""

        def __init__(self, folder: Path, salt: str) -> None:
            super().__init__(str(folder), "%s.jinja")
            self.salt = salt

        def get_cache_key(self, name: str, filename: str | None = None) -> str:
            return hashlib.sha256(f"{self.salt}\0{name}\0{filename}".encode()).hexdigest()[:40]

        def load_bytecode(self, bucket: Bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:  # noqa: BLE001 - a damaged file: compiled again (and written over)
                bucket.reset()

        def dump_bytecode(self, bucket: Bucket) -> None:
            try:
                super().dump_bytecode(bucket)  # a temporary file renamed: workers may write at once
            except OSError:  # a full disk, a folder gone read-only: compiled again next time
                pass

    return TemplateCache
