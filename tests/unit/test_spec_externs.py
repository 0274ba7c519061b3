"""Extern resolution inputs that need no kernel: kconfig parsing and layout, kernel version codes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from rawbpf.consts import MapType
from rawbpf.errors import RelocationError
from rawbpf.externs import _kconfig_bytes, fill_kconfig, kernel_version_code, read_kconfig
from rawbpf.spec import CollectionSpec, ExternSpec, MapKind, MapSpec


def test_kernel_version_code() -> None:
    assert kernel_version_code("6.18.44-fc-v669") == (6 << 16) | (18 << 8) | 44
    assert kernel_version_code("5.4.300") == (5 << 16) | (4 << 8) | 255  # patch level saturates
    assert kernel_version_code("6.1") == (6 << 16) | (1 << 8)
    assert kernel_version_code("weird") == 0


def test_read_kconfig_plain_and_gzip(tmp_path: Path) -> None:
    text = '# comment\nCONFIG_BPF=y\nCONFIG_HZ=250\nCONFIG_X="abc"\n# CONFIG_NO is not set\n'
    plain = tmp_path / "config"
    plain.write_text(text)
    gz = tmp_path / "config.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    for p in (plain, gz):
        cfg = read_kconfig([str(p)])
        assert cfg == {"CONFIG_BPF": "y", "CONFIG_HZ": "250", "CONFIG_X": '"abc"'}
    assert read_kconfig([str(tmp_path / "missing")]) == {}


@pytest.mark.parametrize(
    ("value", "size", "raw"),
    [
        ("y", 1, b"\1"),
        ("m", 4, b"\2\0\0\0"),
        ("n", 1, b"\0"),
        ("250", 4, b"\xfa\0\0\0"),
        ("0x10", 8, b"\x10" + bytes(7)),
        ('"abc"', 8, b"abc" + bytes(5)),
        ('"abcdefgh"', 4, b"abc\0"),
    ],
)
def test_kconfig_values(value: str, size: int, raw: bytes) -> None:
    assert _kconfig_bytes(value, size) == raw


def _spec() -> CollectionSpec:
    spec = CollectionSpec(name="k")
    spec.externs = {
        "LINUX_KERNEL_VERSION": ExternSpec("LINUX_KERNEL_VERSION", "kconfig", size=4, offset=0),
        "CONFIG_HZ": ExternSpec("CONFIG_HZ", "kconfig", size=4, offset=4),
        "CONFIG_MAYBE": ExternSpec("CONFIG_MAYBE", "kconfig", size=1, offset=8, weak=True),
    }
    spec.maps["k.kconfig"] = MapSpec(
        "k.kconfig", MapType.ARRAY, 4, 9, 1, kind=MapKind.KCONFIG, section=".kconfig", data=bytearray(9)
    )
    return spec


def test_fill_kconfig() -> None:
    spec = _spec()
    fill_kconfig(spec, {"CONFIG_HZ": "1000"})
    data = spec.maps["k.kconfig"].data
    assert data is not None
    assert int.from_bytes(data[0:4], "little") == kernel_version_code()
    assert int.from_bytes(data[4:8], "little") == 1000 and data[8] == 0


def test_missing_strong_kconfig_is_an_error() -> None:
    spec = _spec()
    with pytest.raises(RelocationError, match=r"^object 'k': extern 'CONFIG_HZ' \(__kconfig\) is not set"):
        fill_kconfig(spec, {})
