"""A reachable poisoned CO-RE instruction: the verifier's riddle, and explain_poison's answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawbpf.btf import core, kernel
from rawbpf.errors import RelocationError, VerifierError

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("kernel_core", [False, True], ids=["user-core", "kernel-core"])
def test_explain_poison_names_type_field_and_line(kernel_core: bool) -> None:
    from rawbpf.collection import Collection
    from rawbpf.elf import load_spec

    spec = load_spec(str(DATA / "btf" / "core_unguarded.o"))
    with pytest.raises(RelocationError) as err:
        Collection.load(spec, kernel_core=kernel_core).close()
    # The loader answers the riddle itself: type, field path and source line, one line.
    msg = str(err.value)
    assert "struct task_struct___nope.rawbpf_absent" in msg and "core_unguarded.c:" in msg
    assert "\n" not in msg
    riddle = err.value.__cause__
    assert isinstance(riddle, VerifierError)
    assert "unknown#195896080" in str(riddle)  # both CO-RE paths poison the same way
    insn = riddle.insn_index
    assert insn is not None
    prog = spec.programs["unguarded"]
    assert spec.btf is not None and spec.btf_ext is not None
    lines = spec.btf_ext.source_lines(prog.section)
    relos = [(r.insn, r) for r in prog.core_relos]
    why = core.explain_poison(relos, spec.btf, insn, kernel.targets(), line_of=lines, prog_name="unguarded")
    assert why.startswith("program 'unguarded': CO-RE relocation #0 (field_byte_offset of "
                          "struct task_struct___nope.rawbpf_absent) [at ./core_unguarded.c:")
    assert why.endswith(": no field struct task_struct___nope.rawbpf_absent in the target BTF")
    assert core.explain_poison(relos, spec.btf, insn + 5, kernel.targets()) == ""
