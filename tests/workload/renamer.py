#!/usr/bin/env python3
"""An unrelated program that renames itself to ``claude`` (prctl PR_SET_NAME) and from then on is tracked.

Connects once before the rename (must not be recorded), renames, connects again and runs /bin/true (both
recorded), then exits with code 5. Writes its pid and the child's pid as JSON to argv[2].
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys


def main() -> int:
    port, report = int(sys.argv[1]), sys.argv[2]
    with socket.create_connection(("127.0.0.1", port)):
        pass
    ctypes.CDLL(None).prctl(15, b"claude", 0, 0, 0)
    with socket.create_connection(("127.0.0.1", port)):
        pass
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/true", ["/bin/true"])
    os.waitpid(pid, 0)
    with open(report, "w") as f:
        json.dump({"pid": os.getpid(), "child": pid}, f)
    return 5


if __name__ == "__main__":
    sys.exit(main())
