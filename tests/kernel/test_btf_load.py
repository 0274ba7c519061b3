"""BTF_LOAD of what rawbpf.btf produces: every corpus object's .BTF (datasecs filled), sanitised variants."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from elftools.elf.elffile import ELFFile

from rawbpf.btf import BTF, BtfFeatures, Kind, fill_datasecs, fixup_externs, marshal, sanitized
from rawbpf.errors import BTFError
from rawbpf.kbtf import KernelBTF

DATA = Path(__file__).resolve().parents[1] / "data"
OBJECTS = sorted(p for p in [*DATA.glob("*.o"), *DATA.glob("btf/*.o")]
                 # naked_btf.o's BTF is refused by the kernel on purpose (test_libbpf_conformance)
                 if p.name not in ("bad_btf.o", "truncated.o", "wrong_machine.o", "naked_btf.o"))


def object_btf(path: Path) -> Tuple[BTF, Dict[str, int], Dict[str, Dict[str, int]], List[str]]:
    """The object's BTF plus what fill_datasecs needs from its ELF: section sizes, symbol values, hidden."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        btf = BTF.parse(elf.get_section_by_name(".BTF").data())
        sizes = {s.name: s["sh_size"] for s in elf.iter_sections()}
        syms: Dict[str, Dict[str, int]] = {}
        hidden = []
        for s in elf.get_section_by_name(".symtab").iter_symbols():
            if s["st_info"]["type"] != "STT_OBJECT" or not isinstance(s["st_shndx"], int):
                continue
            syms.setdefault(elf.get_section(s["st_shndx"]).name, {})[s.name] = s["st_value"]
            if s["st_other"]["visibility"] in ("STV_HIDDEN", "STV_INTERNAL"):
                hidden.append(s.name)
    return btf, sizes, syms, hidden


def filled(path: Path) -> BTF:
    """The object's BTF as a loader hands it to the kernel: externs rewritten, datasecs filled."""
    btf, sizes, syms, hidden = object_btf(path)
    kcfg: Dict[str, int] = {}
    if btf.find(".kconfig") is not None:
        from rawbpf.elf import load_spec

        spec = load_spec(str(path))
        kcfg = {e.name: e.offset for e in spec.externs.values() if e.kind == "kconfig"}
    fixup_externs(btf, kcfg)
    fill_datasecs(btf, sizes, syms, hidden)
    return btf


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_filled_btf_of_every_object_loads_and_reads_back_identically(path: Path) -> None:
    btf = filled(path)
    raw = marshal(btf)
    with KernelBTF.load(raw) as kb:
        assert kb.info().size == len(raw)
        back = BTF.parse(kb.data())
    assert back == btf


def test_clang_btf_without_datasec_sizes_is_refused() -> None:
    btf, *_ = object_btf(DATA / "globals.o")
    assert any(t.kind == Kind.DATASEC and t.size == 0 and t.vars for t in btf.own_types())
    with pytest.raises(BTFError, match="load btf"):
        KernelBTF.load(marshal(btf)).close()


# what kernels lack, newest first: each generation also lacks everything the ones before it lack
GENERATIONS = [("6.0", "enum64"), ("5.18", "qmark_datasec"), ("5.17", "type_tag"), ("5.16", "decl_tag"),
               ("5.13", "float"), ("5.6", "func_global"), ("5.2", "datasec"), ("5.0", "func")]


def features_before(release: str) -> BtfFeatures:
    names = [f for _, f in GENERATIONS[: [r for r, _ in GENERATIONS].index(release) + 1]]
    return dataclasses.replace(BtfFeatures(), **{n: False for n in names})


def test_generations_cover_every_feature() -> None:
    assert features_before("5.0") == BtfFeatures.none()


@pytest.mark.parametrize("release", [r for r, _ in GENERATIONS])
@pytest.mark.parametrize("path", [DATA / "btf" / "kinds.o", DATA / "globals.o", DATA / "core.o",
                                  DATA / "btf" / "externs.o"], ids=lambda p: p.name)
def test_sanitised_btf_loads(path: Path, release: str) -> None:
    feats = features_before(release)
    btf = filled(path)
    clean = sanitized(btf, feats)
    kinds = {t.kind for t in clean.own_types()}
    if not feats.datasec:
        assert not kinds & {Kind.VAR, Kind.DATASEC}
    if not feats.func:
        assert not kinds & {Kind.FUNC, Kind.FUNC_PROTO}
    if not feats.decl_tag:
        assert Kind.DECL_TAG not in kinds
    if not feats.type_tag:
        assert Kind.TYPE_TAG not in kinds
    if not feats.float:
        assert Kind.FLOAT not in kinds
    with KernelBTF.load(marshal(clean)) as kb:
        assert BTF.parse(kb.data()) == clean
    assert btf == filled(path), "sanitising must not touch the original"


def test_sanitised_enum64_loads() -> None:
    btf = BTF.parse((DATA / "btf" / "handmade.btf").read_bytes())
    btf.get("ext").linkage = 1  # an extern FUNC outside .ksyms: the kernel takes only static/global
    for t in btf.own_types():  # handmade.btf is kinds.o's unfilled BTF plus ENUM64s: place its vars
        if t.kind == Kind.DATASEC:
            t.size = 4096
            for i, v in enumerate(t.vars):
                v.offset = i * 256
    with KernelBTF.load(marshal(btf)):
        pass
    clean = sanitized(btf, dataclasses.replace(BtfFeatures(), enum64=False))
    big = clean.get("big")
    assert big.kind == Kind.UNION and [m.name for m in big.members] == ["M", "H"]
    assert clean[big.members[0].type].name == "enum64_placeholder"
    assert not clean.get("senum").kind_flag
    with KernelBTF.load(marshal(clean)) as kb:
        assert BTF.parse(kb.data()) == clean
