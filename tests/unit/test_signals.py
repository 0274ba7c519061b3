"""rawbpf.signals, the one owner of process signals: real signals sent to this process."""

from __future__ import annotations

import os
import signal
import threading
from typing import List

from rawbpf import signals
from rawbpf.signals import StopSignals


def test_sigterm_and_sigint_set_stop_and_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with StopSignals() as owner:
            assert signals.active() is owner and owner.installed
            assert signal.getsignal(signal.SIGHUP) == before[signal.SIGHUP]  # nobody asked for SIGHUP
            os.kill(os.getpid(), sig)
            assert owner.stop.wait(5)
        assert signals.active() is None
    assert {s: signal.getsignal(s) for s in before} == before


def test_sighup_reaches_whoever_registered_while_registered() -> None:
    before = signal.getsignal(signal.SIGHUP)
    got: List[int] = []
    with StopSignals() as owner:
        remove = signals.on_hangup(lambda: got.append(1))
        assert remove is not None
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)
        assert got == [1, 1] and not owner.stop.is_set()
        remove()
        assert signal.getsignal(signal.SIGHUP) == before
    assert signals.on_hangup(lambda: None) is None  # no owner: nothing to register with


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: List[object] = []

    def body() -> None:
        with StopSignals() as owner:
            seen.append((owner.installed, signal.getsignal(signal.SIGTERM)))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [(False, before)]
