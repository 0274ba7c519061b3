"""rawbpf: a pure-Python eBPF toolkit (loader, assembler, ring-buffer consumer) and a Claude Code monitor.

The package root is the API; everything else is an implementation module. Importing it makes no syscalls and
imports nothing but the errors: each name below is imported the first time it is used.

Parse an object (no syscalls) and load it::

    import rawbpf

    spec = rawbpf.load_spec("programs/claude_monitor.o")
    with rawbpf.Collection.load(spec) as coll:
        coll.attach_all()

- objects: :func:`load_spec` → :class:`CollectionSpec` (:class:`ProgramSpec`, :class:`MapSpec`,
  :class:`VariableSpec`) → :meth:`Collection.load` → :class:`Collection` (maps, programs, links, globals)
- kernel objects: :class:`Map`, :class:`Program`, :class:`Link`, with :class:`MapType` and :class:`ProgType`
- events: :class:`RingBuffer`, :class:`PerfBuffer`; :class:`Daemon` / :class:`DaemonOptions` consume every
  ring of a collection into the log; :class:`LogWriter` and :class:`LogReader` are the rotating msgpack log
- a foreground run like ``rawbpf load``: :func:`load_and_run` → :class:`LoadResult`
- assembly: :class:`Assembler`, :class:`Instruction`, :func:`disassemble`; types: :class:`BTF`
- errors: :class:`RawBPFError` and its subclasses (all in :mod:`rawbpf.errors`)
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any, Dict, List

from rawbpf.errors import (
    AsmError,
    BTFError,
    BTFLoadError,
    ConfigError,
    KernelRefusal,
    LogFormatError,
    NotSupportedError,
    ObjectError,
    RawBPFError,
    RelocationError,
    SyscallError,
    VerifierError,
)

if TYPE_CHECKING:  # pragma: no cover
    from rawbpf.asm import Assembler, Instruction, disassemble
    from rawbpf.attach import Link
    from rawbpf.btf import BTF
    from rawbpf.collection import Collection
    from rawbpf.consts import MapType, ProgType
    from rawbpf.daemon import Daemon, DaemonOptions
    from rawbpf.elf import load_spec
    from rawbpf.logfile import LogReader, LogWriter
    from rawbpf.maps import Map
    from rawbpf.perfbuf import PerfBuffer
    from rawbpf.programs import Program
    from rawbpf.ringbuf import RingBuffer
    from rawbpf.run import LoadResult, load_and_run
    from rawbpf.spec import CollectionSpec, MapSpec, ProgramSpec, VariableSpec

__tier__ = "kernel"

__version__ = "0.1.0"

#: public name → the module that defines it (imported on first use)
_LAZY: Dict[str, str] = {
    "load_spec": "rawbpf.elf",
    "CollectionSpec": "rawbpf.spec", "ProgramSpec": "rawbpf.spec", "MapSpec": "rawbpf.spec",
    "VariableSpec": "rawbpf.spec",
    "Collection": "rawbpf.collection",
    "Map": "rawbpf.maps", "Program": "rawbpf.programs", "Link": "rawbpf.attach",
    "MapType": "rawbpf.consts", "ProgType": "rawbpf.consts",
    "RingBuffer": "rawbpf.ringbuf", "PerfBuffer": "rawbpf.perfbuf",
    "Daemon": "rawbpf.daemon", "DaemonOptions": "rawbpf.daemon",
    "LogReader": "rawbpf.logfile", "LogWriter": "rawbpf.logfile",
    "load_and_run": "rawbpf.run", "LoadResult": "rawbpf.run",
    "Assembler": "rawbpf.asm", "Instruction": "rawbpf.asm", "disassemble": "rawbpf.asm",
    "BTF": "rawbpf.btf",
}

__all__ = [
    "AsmError", "Assembler", "BTF", "BTFError", "BTFLoadError", "Collection", "CollectionSpec", "ConfigError",
    "Daemon", "DaemonOptions", "Instruction", "KernelRefusal", "Link", "LoadResult", "LogFormatError",
    "LogReader", "LogWriter", "Map", "MapSpec", "MapType", "NotSupportedError", "ObjectError", "PerfBuffer",
    "ProgType", "Program", "ProgramSpec", "RawBPFError", "RelocationError", "RingBuffer", "SyscallError",
    "VariableSpec", "VerifierError", "__version__", "disassemble", "load_and_run", "load_spec",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rawbpf' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    # the next lookup is a plain attribute (the name ``globals`` here is the rawbpf.globals submodule)
    setattr(sys.modules[__name__], name, value)
    return value


def __dir__() -> List[str]:
    return sorted(set(vars(sys.modules[__name__])) | set(_LAZY))
