"""A child started with ``die_with_parent`` gets SIGTERM when the thread that forked it ends."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest
from lw_core.process import die_with_parent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_child_dies_with_the_thread_that_forked_it() -> None:
    children: list[subprocess.Popen[bytes]] = []
    forker = threading.Thread(
        target=lambda: children.append(subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent()))
    )
    forker.start()
    forker.join()
    try:
        assert children[0].wait(timeout=10) == -signal.SIGTERM
    finally:
        children[0].kill()
