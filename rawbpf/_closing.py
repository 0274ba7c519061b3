"""The context-manager half every resource owner shares.

An owner subclasses :class:`Closing` and implements an idempotent ``close()``; ``with`` closes it on the way
out and a forgotten owner is closed when it is collected. Owners whose collection-time close must do less
than ``close()`` (not unpin, not flush) override :meth:`_close_at_collection`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Optional, Type, TypeVar

__tier__ = "pure"

T = TypeVar("T", bound="Closing")


class Closing:
    """``with`` support and a collection-time safety net around a subclass's ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def _close_at_collection(self) -> None:
        self.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._close_at_collection()
        except Exception:
            pass
