"""The telegram-test-api emulator (npm 4.2.1) behind sim/telegram_emulator.js, on 127.0.0.1."""

from __future__ import annotations

import os

import pytest

from sim.telegram_emulator import TelegramEmulator, unavailable_reason


class Emulator(TelegramEmulator):
    """The tests' handle on the emulator (see sim/telegram_emulator.py)."""


@pytest.fixture(scope="session")
def emulator():
    reason = unavailable_reason()
    if reason:
        msg = f"telegram-test-api emulator unavailable: {reason}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    emu = Emulator().start()
    yield emu
    emu.stop()
