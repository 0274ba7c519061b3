"""File-descriptor ownership for kernel objects (touches the kernel only to close).

Every rawbpf object that owns an fd subclasses :class:`FD`: it is a context manager, ``close()`` is idempotent
(the fd is set to -1 *before* the close syscall so a failure cannot lead to a double close), and ``__del__``
closes a forgotten fd as a safety net.
"""

from __future__ import annotations

from rawbpf import _sys
from rawbpf._closing import Closing
from rawbpf.errors import RawBPFError

__tier__ = "kernel"

class FD(Closing):
    """Owns one file descriptor. Closing the owner releases the kernel object (unless pinned or linked)."""

    _fd: int = -1
    kind: str = "fd"

    def __init__(self, fd: int, *, owned: bool = True) -> None:
        if fd < 0:
            raise RawBPFError(f"invalid {self.kind} file descriptor {fd}")
        self._fd = fd
        self._owned = owned

    @property
    def fd(self) -> int:
        """The raw descriptor; raises if the object was closed."""
        if self._fd < 0:
            raise RawBPFError(f"{self.kind} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        """Release the fd; calling it again does nothing."""
        fd, self._fd = self._fd, -1
        if fd >= 0 and getattr(self, "_owned", True):
            _sys.close(fd)

    def detach_fd(self) -> int:
        """Give up ownership and return the raw fd (the caller must close it)."""
        fd, self._fd = self.fd, -1
        return fd

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<{type(self).__name__} {state}>"
