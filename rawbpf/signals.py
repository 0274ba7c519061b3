"""The one owner of process signals: SIGINT/SIGTERM stop a foreground run, SIGHUP asks for the log to be
reopened; pure (no BPF syscalls).

Python allows handlers only in the main thread, and a process has one handler per signal, so whoever runs
in the foreground (``rawbpf load``, :meth:`rawbpf.daemon.Daemon.run` on its own) enters :class:`StopSignals`;
code running inside it (a daemon consuming rings) registers for SIGHUP with :func:`on_hangup` instead of
installing its own handler. Handlers only set flags and call registered callbacks that set flags.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable, Dict, List, Optional

__tier__ = "files"

__all__ = ["StopSignals", "active", "on_hangup"]

_active: List[StopSignals] = []


class StopSignals:
    """While entered (in the main thread): SIGINT/SIGTERM set :attr:`stop`, SIGHUP calls the hangup callbacks
    registered with :meth:`on_hangup`.

    Elsewhere than the main thread it installs nothing and :attr:`stop` is only set by its owner. The previous
    handlers come back on exit, also when the body raised.
    """

    def __init__(self, stop: Optional[threading.Event] = None) -> None:
        self.stop = stop if stop is not None else threading.Event()
        self._hangup: List[Callable[[], None]] = []
        self._previous: Dict[int, Any] = {}
        self.installed = False

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_stop)
            self.installed = True
        _active.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self in _active:
            _active.remove(self)
        for sig, fn in self._previous.items():
            signal.signal(sig, fn)
        self._previous.clear()
        self.installed = False

    def on_hangup(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` on SIGHUP while entered; returns the function that unregisters it. SIGHUP is handled
        only while someone is registered (its default, ending the process, applies otherwise)."""
        self._hangup.append(fn)
        if self.installed and signal.SIGHUP not in self._previous and \
                threading.current_thread() is threading.main_thread():
            self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)

        def remove() -> None:
            if fn in self._hangup:
                self._hangup.remove(fn)
            if not self._hangup and signal.SIGHUP in self._previous and \
                    threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGHUP, self._previous.pop(signal.SIGHUP))
        return remove

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stop.set()

    def _on_hup(self, signum: int, frame: Any) -> None:
        for fn in list(self._hangup):
            fn()


def active() -> Optional[StopSignals]:
    """The innermost :class:`StopSignals` entered by this process, if any."""
    return _active[-1] if _active else None


def on_hangup(fn: Callable[[], None]) -> Optional[Callable[[], None]]:
    """Register ``fn`` for SIGHUP with the active :class:`StopSignals`; None when none is active."""
    owner = active()
    return owner.on_hangup(fn) if owner is not None else None
