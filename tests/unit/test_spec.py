"""Setting and reading global variables by BTF type, on specs (no kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawbpf.elf import load_spec
from rawbpf.errors import ConfigError
from rawbpf.globals import decode_value

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture()
def spec():  # type: ignore[no-untyped-def]
    return load_spec(DATA / "globals.o")


@pytest.mark.parametrize(
    ("name", "value", "expect"),
    [
        ("cfg_u32", "99", 99),
        ("cfg_u32", "0x10", 16),
        ("cfg_u32", 4294967295, 4294967295),
        ("cfg_u64", "0x8000000000000000", 1 << 63),
        ("cfg_bool", "true", True),
        ("cfg_bool", "0", False),
        ("cfg_bool", True, True),
        ("cfg_name", "hello", "hello"),
        ("cfg_name", "x" * 16, "x" * 16),
    ],
)
def test_set_constant(spec, name: str, value: object, expect: object) -> None:  # type: ignore[no-untyped-def]
    spec.set_constant(name, value)
    var = spec.variables[name]
    assert decode_value(spec.btf, var.type_id, var.value(spec)) == expect


@pytest.mark.parametrize(
    ("name", "value", "pattern"),
    [
        ("cfg_u32", "-1", "does not fit"),
        ("cfg_u32", "abc", "not an integer"),
        ("cfg_u32", 1 << 32, "does not fit"),
        ("cfg_bool", "maybe", "not a boolean"),
        ("cfg_name", "x" * 17, "does not fit"),
        ("nope", 1, "no global variable 'nope'"),
        ("cfg_u32", b"\0", "needs 4 bytes"),
    ],
)
def test_set_constant_errors(spec, name: str, value: object, pattern: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=pattern):
        spec.set_constant(name, value)


def test_setting_one_variable_leaves_neighbours(spec) -> None:  # type: ignore[no-untyped-def]
    before = {n: v.value(spec) for n, v in spec.variables.items()}
    spec.set_constant("cfg_bool", True)
    after = {n: v.value(spec) for n, v in spec.variables.items()}
    assert {n for n in before if before[n] != after[n]} == {"cfg_bool"}


def test_counts(spec) -> None:  # type: ignore[no-untyped-def]
    assert spec.relocation_count() == sum(len(p.relocations) for p in spec.programs.values())
    assert spec.core_relo_count() == 0


def test_structs_and_arrays_decode_by_member() -> None:
    core = load_spec(DATA / "core.o")
    var = core.variables["result"]
    value = decode_value(core.btf, var.type_id, var.value(core))
    assert isinstance(value, dict) and value["ran"] == 0 and value["comm"] == ""
    assert list(value)[:3] == ["ran", "pid", "tgid"]
    kinds = load_spec(DATA / "attach_kinds.o")
    hits = kinds.variables["hits"]
    assert decode_value(kinds.btf, hits.type_id, hits.value(kinds)) == [0] * 9
