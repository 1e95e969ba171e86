"""Child processes that do not outlive their parent: a server or trainer left running by a killed driver holds a GPU.

>>> import subprocess, sys
>>> subprocess.run([sys.executable, "-c", "print('child')"], preexec_fn=die_with_parent(), capture_output=True).stdout
b'child\\n'
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
from collections.abc import Callable

__all__ = ["die_with_parent"]


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when the thread that forks it ends (elsewhere: no-op).

    Call it in the parent, in the thread that forks: libc is resolved here, because the child between fork and exec
    should not load libraries, and the signal follows the forking *thread*, not the process.
    """
    try:
        prctl: Callable[..., int] | None = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        prctl = None
    return functools.partial(_arm, prctl, os.getpid())


def _arm(prctl: Callable[..., int] | None, parent: int) -> None:  # pragma: no cover - runs in the child
    if prctl is None:
        return
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
