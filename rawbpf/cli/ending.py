"""How a ``rawbpf`` command ends when its reader or its user stops it: the way coreutils commands end.

A reader that leaves (``rawbpf report | head -1``) kills the command with SIGPIPE, status 141 in the shell,
like ``seq 100000 | head -1``; Ctrl-C kills it with SIGINT, status 130, like ``cat`` (``rawbpf tail``, whose
Ctrl-C is how ``-f`` is meant to end, exits 0 instead). Both say nothing on stderr, and both end by the
signal itself rather than an exit status, so that a shell running a script stops the script on Ctrl-C as it
does for any other command. ``rawbpf load`` and ``ship`` take SIGINT through :mod:`rawbpf.signals` and stop
cleanly; what is here applies only where a signal reaches a command as an exception.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

__tier__ = "files"

__all__ = ["die_of", "die_of_sigpipe", "flush_stdout"]


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit goes nowhere instead of failing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def die_of(signum: int) -> NoReturn:
    """End killed by ``signum`` (status 128 + signum in the shell) with nothing on stderr. Output still
    buffered is written first, unless the reader has gone."""
    if signum == signal.SIGPIPE:
        _drop_stdout()
    else:
        try:
            sys.stdout.flush()
        except (OSError, ValueError, AttributeError):
            _drop_stdout()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)  # not reached: the default action of both signals ends the process


def die_of_sigpipe() -> NoReturn:
    """End the way ``cat`` and ``tail -f`` end when the reader of the pipe left: killed by SIGPIPE."""
    die_of(signal.SIGPIPE)


def flush_stdout() -> None:
    """Write out what is buffered; a reader that has gone ends the process as :func:`die_of_sigpipe` does,
    other failures to write at the very end are not worth a traceback."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        die_of_sigpipe()
    except (OSError, ValueError, AttributeError):
        pass
