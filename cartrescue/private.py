"""Files that hold customers' personal data: their owner's alone (0600), whatever the umask.

Under the usual umask 022 a file is made 0644, readable by every account on the machine: the
ledger, a message file, the call list and a survey export hold customers' names, addresses,
phone numbers and carts. A file that is already there keeps its mode (one a shop shared with its
staff's group stays shared): only the creating ``open`` takes this mode.
"""

from __future__ import annotations

import os

#: The mode of a private file: read and write for its owner, nothing for the others.
MODE = 0o600


def opener(path: str, flags: int) -> int:
    """``open(path, mode, opener=opener)``: a file it creates is :data:`MODE`, not the umask's."""
    return os.open(path, flags, MODE)
