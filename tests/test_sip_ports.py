"""The SIP audio port must survive being dropped while PJSIP's clock thread is calling it.

Each run is a process of its own (``tests/port_churn.py``): the failure this guards against is a
corrupted heap, which kills the process (SIGSEGV), sometimes much later than its cause. Before
``FramePort.destroy``, the ``drop`` run died at its first port, and CI died in
``tests/test_sip_line.py`` when a call's port went while the clock thread waited for the GIL.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.net import exit_text

ROOT = Path(__file__).resolve().parent.parent
PORTS = 50


@pytest.mark.parametrize("mode, warnings", [
    ("destroy", 0),      # what SipLine and the handset do: FramePort.destroy() on the PJSIP thread
    ("drop", PORTS),     # a port forgotten: __del__ destroys it in the same safe order, and says so
])
def test_sip_frame_ports_dropped_while_the_clock_calls_them_keep_the_process_alive(mode, warnings):
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-m", "tests.port_churn", mode, str(PORTS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{exit_text(proc.returncode)}:\n{proc.stderr[-3000:]}"
    assert f"churned {PORTS} ports, {warnings} warnings" in proc.stdout


@pytest.mark.parametrize("code, text", [
    (0, "exit code 0"), (1, "exit code 1"), (-11, "killed by SIGSEGV"), (-6, "killed by SIGABRT"),
    (-99, "killed by signal 99"),
])
def test_a_peer_process_end_is_named(code, text):
    assert exit_text(code) == text
