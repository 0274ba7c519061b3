"""How long a kernel test waits before it calls something hung.

``patience(seconds)`` is ``seconds`` times ``RAWBPF_TEST_TIME_SCALE`` (default 1). make test-kernels sets it
in its qemu TCG guests, where every instruction is emulated: a monitor load that takes 2 s here takes 20 s or
more there on busy cores. Only waits that guard against a hang go through it (subprocess timeouts, deadlines
for something that must arrive); a wait for something that must *not* happen, and anything a test measures
or asserts, does not.
"""

from __future__ import annotations

import os

SCALE = max(1.0, float(os.environ.get("RAWBPF_TEST_TIME_SCALE") or 1))


def patience(seconds: float) -> float:
    """``seconds`` for a hang guard, scaled for an emulated kernel."""
    return seconds * SCALE
