"""Encode and decode global variables by their BTF type (ints, bools, enums, chars, char arrays); pure.

Used to set ``const volatile`` values before load (``rawbpf load --set NAME=VALUE``, ``constants=``) and to
read and write ``.data``/``.bss`` variables of a loaded collection by name. A value given as a string (from
the command line) is parsed per the type: ``42``/``0x2a`` for integers, ``true``/``false`` for bools, an
enumerator name for enums, the text itself for char arrays.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Optional, Protocol

from rawbpf.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from rawbpf.btf import BTF

__tier__ = "pure"


class HasBTF(Protocol):
    """What encoding reads of a spec (a :class:`rawbpf.spec.CollectionSpec`)."""

    @property
    def btf(self) -> Optional[BTF]: ...


class Variable(Protocol):
    """What encoding reads of a variable (a :class:`rawbpf.spec.VariableSpec`)."""

    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def type_id(self) -> int: ...

INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4
_MAX_DEPTH = 8


def _kind(t: Any) -> str:
    return str(getattr(t.kind, "name", t.kind)).upper()


def _resolved(btf: BTF, type_id: int) -> Any:
    return btf[btf.resolve(type_id)]


def encode_value(spec: HasBTF, var: Variable, value: Any) -> bytes:
    """The bytes of ``value`` for ``var`` (exactly ``var.size``); ConfigError if it does not fit the type."""
    where = f"variable '{var.name}'"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) != var.size:
            raise ConfigError(f"{where}: needs {var.size} bytes, got {len(raw)}")
        return raw
    btf = spec.btf
    if btf is None or not var.type_id:
        return _encode_untyped(where, var.size, value)
    t = _resolved(btf, var.type_id)
    kind = _kind(t)
    if kind == "INT":
        if t.int_encoding & INT_BOOL:
            return _int_bytes(where, _to_bool(where, value), var.size, False)
        return _int_bytes(where, _to_int(where, value), var.size, bool(t.int_encoding & INT_SIGNED))
    if kind in ("ENUM", "ENUM64"):
        if isinstance(value, str):
            for ev in t.values:
                if ev.name == value:
                    return _int_bytes(where, int(ev.value), var.size, ev.value < 0)
        return _int_bytes(where, _to_int(where, value), var.size, bool(getattr(t, "kind_flag", False)))
    if kind == "PTR":
        return _int_bytes(where, _to_int(where, value), var.size, False)
    if kind == "FLOAT":
        fmt = {4: "<f", 8: "<d"}.get(var.size)
        if fmt is None:
            raise ConfigError(f"{where}: cannot set a {var.size}-byte float")
        try:
            return struct.pack(fmt, float(value))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: '{value}' is not a number") from err
    if kind == "ARRAY" and _is_char(btf, t.array.type):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expects a string")
        raw = value.encode()
        if len(raw) > var.size:
            raise ConfigError(f"{where}: string of {len(raw)} bytes does not fit in char[{var.size}]")
        return raw.ljust(var.size, b"\0")
    raise ConfigError(
        f"{where}: cannot set a value of type {btf.type_name(var.type_id)} from {value!r} (give raw bytes)"
    )


def decode_value(btf: Optional[BTF], type_id: int, raw: bytes, depth: int = 0) -> Any:
    """A Python value for the bytes of a variable: int, bool, float, str (char arrays), enum name, list
    (arrays), dict (structs and unions, by member name); bytes when the type says nothing better."""
    if btf is None or not type_id:
        return int.from_bytes(raw, "little") if len(raw) in (1, 2, 4, 8) else bytes(raw)
    t = _resolved(btf, type_id)
    kind = _kind(t)
    if kind == "INT" and len(raw) in (1, 2, 4, 8, 16):
        if t.int_encoding & INT_BOOL:
            return raw != bytes(len(raw))
        return int.from_bytes(raw, "little", signed=bool(t.int_encoding & INT_SIGNED))
    if kind in ("ENUM", "ENUM64"):
        v = int.from_bytes(raw, "little", signed=bool(getattr(t, "kind_flag", False)))
        for ev in t.values:
            if ev.value == v:
                return ev.name
        return v
    if kind == "PTR":
        return int.from_bytes(raw, "little")
    if kind == "FLOAT" and len(raw) in (4, 8):
        return struct.unpack("<f" if len(raw) == 4 else "<d", raw)[0]
    if kind == "ARRAY" and _is_char(btf, t.array.type):
        text = bytes(raw).split(b"\0", 1)[0]
        try:
            return text.decode()
        except UnicodeDecodeError:
            return bytes(raw)
    if kind == "ARRAY" and depth < _MAX_DEPTH:
        esize = btf.size_of(t.array.type)
        if esize and esize * t.array.nelems == len(raw):
            return [decode_value(btf, t.array.type, raw[i * esize:(i + 1) * esize], depth + 1)
                    for i in range(t.array.nelems)]
    if kind in ("STRUCT", "UNION") and depth < _MAX_DEPTH and t.size == len(raw):
        out = {}
        for i, m in enumerate(t.members):
            name = m.name or f"_{i}"
            if m.bitfield_size:
                word = int.from_bytes(raw, "little")
                out[name] = (word >> m.bits_offset) & ((1 << m.bitfield_size) - 1)
                continue
            start = m.bits_offset // 8
            out[name] = decode_value(btf, m.type, raw[start:start + btf.size_of(m.type)], depth + 1)
        return out
    return bytes(raw)


def _is_char(btf: BTF, type_id: int) -> bool:
    t = _resolved(btf, type_id)
    return (
        _kind(t) == "INT"
        and t.size == 1
        and (
            bool(t.int_encoding & INT_CHAR)
            or t.name in ("char", "signed char", "unsigned char", "__u8", "__s8", "u8", "s8")
        )
    )


def _to_int(where: str, value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError as err:
            raise ConfigError(f"{where}: '{value}' is not an integer") from err
    raise ConfigError(f"{where}: {value!r} is not an integer")


def _to_bool(where: str, value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on", "y"):
            return 1
        if low in ("0", "false", "no", "off", "n"):
            return 0
    raise ConfigError(f"{where}: '{value}' is not a boolean (true/false)")


def _int_bytes(where: str, v: int, size: int, signed: bool) -> bytes:
    lo = -(1 << (size * 8 - 1)) if signed else 0
    hi = (1 << (size * 8 - 1)) - 1 if signed else (1 << (size * 8)) - 1
    if not lo <= v <= hi:
        raise ConfigError(f"{where}: {v} does not fit in {size} bytes ({'signed' if signed else 'unsigned'})")
    return v.to_bytes(size, "little", signed=signed)


def _encode_untyped(where: str, size: int, value: Any) -> bytes:
    if isinstance(value, str) and not value.strip().lstrip("-").replace("x", "").isalnum():
        raw = value.encode()
        if len(raw) > size:
            raise ConfigError(f"{where}: string does not fit in {size} bytes")
        return raw.ljust(size, b"\0")
    v = _to_int(where, value)
    return _int_bytes(where, v, size, v < 0)
