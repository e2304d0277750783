"""``${NAME}`` and ``${NAME:-default}`` in the config's values, expanded as the shell does.

Apart from the YAML reading: it works on the values read, not on the text.
"""

import re
from typing import Any

from cartrescue.errors import ConfigError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # of a ${NAME}


#: The channels' secrets: a ``${NAME}`` of one that is not set is an error only where a delivery
#: needs it (:meth:`Config.require_env`), so a dry-run, ``templates check`` in CI, ``report`` or
#: ``suppress`` run without the relay's password.
DEFERRED_SECRETS = frozenset({"smtp.password", "sms.twilio.auth_token", "sms.http.password", "sms.http.token",
                              "webhook.secret"})


def interpolate(node: Any, where: str, env: dict[str, str], file: str, unset: dict[str, str]) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string; a missing NAME is an error,
    but for :data:`DEFERRED_SECRETS`, whose key and variable go into ``unset``. As in the shell,
    ``:-`` also takes the default for a NAME set but empty (``SMTP_HOST=`` in a crontab)."""
    if isinstance(node, dict):
        return {key: interpolate(value, f"{where}.{key}" if where else str(key), env, file, unset)
                for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, f"{where}[{index}]", env, file, unset) for index, value in enumerate(node)]
    if isinstance(node, str):
        return _expand(node, where, env, file, unset) if "${" in node else node
    return node


def _expand(text: str, where: str, env: dict[str, str], file: str, unset: dict[str, str]) -> str:
    """``text`` with its ``${NAME}`` and ``${NAME:-default}`` replaced (:func:`interpolate`).

    A default may hold variables itself, expanded only when it is taken, as in the shell:
    ``${SHOP_SECRET:-${CARTRESCUE_SECRET}}``. A regular expression took the default up to its
    first ``}``, so that value was the 20 characters ``${CARTRESCUE_SECRET}``, a secret anyone
    could guess, which signed every unsubscribe link."""
    pieces: list[str] = []
    at = 0
    while (start := text.find("${", at)) >= 0:
        pieces.append(text[at:start])
        name = _ENV_NAME.match(text, start + 2)
        after = name.end() if name else -1
        if name is not None and text.startswith("}", after):
            pieces.append(_variable(name.group(), where, env, file, unset))
            at = after + 1
            continue
        end = _closing(text, after + 2) if name is not None and text.startswith(":-", after) else -1
        if name is None or end < 0:  # "${SMTP_PASSWORD" would be the password itself
            raise ConfigError(f"{file}: {where}: '${{' that is no variable (no name, or no closing '}}'): write "
                              "${NAME} or ${NAME:-default}")
        value = env.get(name.group())  # set but empty takes the default, as ":-" does in the shell
        pieces.append(value or _expand(text[after + 2:end], where, env, file, unset))
        at = end + 1
    pieces.append(text[at:])
    return "".join(pieces)


def _closing(text: str, at: int) -> int:
    """Where the ``}`` that closes a default starting at ``at`` is (nested ``${…}`` skipped); -1: none."""
    depth = 0
    while at < len(text):
        if text.startswith("${", at):
            depth += 1
            at += 2
            continue
        if text[at] == "}":
            if depth == 0:
                return at
            depth -= 1
        at += 1
    return -1


def _variable(name: str, where: str, env: dict[str, str], file: str, unset: dict[str, str]) -> str:
    """The value of ``${name}`` at ``where``: an error where it is not set, but for
    :data:`DEFERRED_SECRETS`, whose key and variable go into ``unset``."""
    if name in env and (env[name] or where not in DEFERRED_SECRETS):
        return env[name]
    if where in DEFERRED_SECRETS:  # unset, or set but empty (SMTP_PASSWORD= in a crontab)
        unset[where] = name
        return f"${{{name}}}"  # never used: require_env stops a delivery first
    raise ConfigError(f"{file}: {where}: environment variable {name} is not set")
