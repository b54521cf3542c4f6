"""Run by ``tests/test_sip_ports.py`` in a process of its own (a crash must not take pytest down):
make FramePorts, connect them both ways to the null sound device, and drop them a few ms later
while the clock thread calls them every 20 ms and another thread keeps the GIL busy.

    python -m tests.port_churn destroy|drop COUNT

``destroy``: ``FramePort.destroy()`` on the PJSIP thread, as ``SipLine`` does. ``drop``: only the
last reference goes (``FramePort.__del__`` must do it). Before ``destroy`` existed, ``drop`` died
with a corrupted heap (SIGSEGV) within a few hundred ports. Prints ``churned N ports, W warnings``.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time

import pjsua2 as pj

from voice.pjsip_runtime import EndpointOptions, FramePort, PjsipThread, PlayQueue


class _Count(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.warnings = 0

    def emit(self, record):
        self.warnings += "without destroy()" in record.getMessage()


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():  # Python work on another thread: the clock thread waits for the GIL
        sum(range(1000))


def main(mode: str, count: int) -> int:
    counter = _Count()
    logging.getLogger("tanfang.pjsip").addHandler(counter)
    runtime = PjsipThread(EndpointOptions())
    runtime.start()
    stop = threading.Event()
    threading.Thread(target=_spin, args=(stop,), daemon=True).start()
    rng = random.Random(7)

    def connected(i: int) -> FramePort:
        port = FramePort(PlayQueue(), on_frame=lambda pcm: None, on_mark=lambda mark: None)
        port.create(f"churn{i}")
        devices = pj.Endpoint.instance().audDevManager()
        port.startTransmit(devices.getPlaybackDevMedia())
        devices.getCaptureDevMedia().startTransmit(port)
        return port

    for i in range(count):
        held = [runtime.submit(connected, i).result(10)]
        time.sleep(rng.random() * 0.03)
        if mode == "destroy":
            runtime.submit(held[0].destroy).result(10)
        runtime.submit(held.clear).result(10)  # the last reference goes on the PJSIP thread
    stop.set()
    runtime.stop()
    print(f"churned {count} ports, {counter.warnings} warnings", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
