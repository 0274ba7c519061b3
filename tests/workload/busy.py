#!/usr/bin/env python3
"""An unrelated busy process: connects and runs programs in a loop; the monitor must record none of it."""

from __future__ import annotations

import os
import socket
import sys


def main() -> int:
    port, rounds = int(sys.argv[1]), int(sys.argv[2])
    for _ in range(rounds):
        with socket.create_connection(("127.0.0.1", port)):
            pass
        pid = os.fork()
        if pid == 0:
            os.execv("/bin/true", ["/bin/true"])
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
