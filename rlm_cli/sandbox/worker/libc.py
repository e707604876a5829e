"""The C library, for the confinement steps (`confine`, `namespaces`, `landlock`, `seccomp`):
one ctypes handle, errno-checked calls, and the prctl options they use. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_libc: Any = None


def libc() -> Any:
    """This process's C library, loaded once, keeping errno for `check`."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def check(result: int, what: str) -> int:
    """`result` of a libc call, or OSError naming `what` and errno when the call failed."""
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result
