"""rawbpf: a pure-Python eBPF toolkit (loader, assembler, ring-buffer consumer) and a Claude Code monitor.

Importing the package makes no syscalls; kernel objects are created only by explicit
``load``/``create`` calls.
"""

from __future__ import annotations

from rawbpf.errors import (
    AsmError,
    BTFError,
    ConfigError,
    LogFormatError,
    NotSupportedError,
    ObjectError,
    RawBPFError,
    RelocationError,
    SyscallError,
    VerifierError,
)

__tier__ = "kernel"

__version__ = "0.1.0"

__all__ = [
    "AsmError",
    "BTFError",
    "ConfigError",
    "LogFormatError",
    "NotSupportedError",
    "ObjectError",
    "RawBPFError",
    "RelocationError",
    "SyscallError",
    "VerifierError",
    "__version__",
]
