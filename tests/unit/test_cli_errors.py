"""The CLI's error contract: one line and exit 1 for a rawbpf error, exit 2 for usage; a verifier
rejection adds the tail of its log, and --verbose the whole log."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from rawbpf.cli import _report
from rawbpf.errors import ObjectError, VerifierError

DATA = Path(__file__).resolve().parents[1] / "data"
LOG = "\n".join(["0: R1=ctx() R10=fp0", "; return *v; @ x.c:9", "7: (79) r0 = *(u64 *)(r0 +0)",
                 "R0 invalid mem access 'map_value_or_null'",
                 "processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0"])


def _rawbpf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rawbpf", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", [DATA / "not_elf.bin", DATA / "truncated.o", DATA / "wrong_machine.o"])
def test_bad_object_is_one_line_and_exit_1(path: Path) -> None:
    res = _rawbpf("inspect", str(path))
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rawbpf: ") and path.stem in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_usage_error_exits_2() -> None:
    res = _rawbpf("inspect", "--no-such-option", str(DATA / "globals.o"))
    assert res.returncode == 2


def test_verifier_error_shows_summary_then_log_tail(capsys: pytest.CaptureFixture) -> None:
    err = VerifierError("load program 'p'", errno.EACCES, LOG, source="x.c:9: return *v;")
    _report(err, verbose=False)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == ("rawbpf: load program 'p': verifier rejected program: R0 invalid mem access "
                        "'map_value_or_null' [at x.c:9: return *v;]")
    assert "  | R0 invalid mem access 'map_value_or_null'" in lines
    assert lines[-1] == "  (the full verifier log: --verbose)"


def test_wrapped_verifier_error_still_shows_the_tail(capsys: pytest.CaptureFixture) -> None:
    cause = VerifierError("load program 'p'", errno.EACCES, LOG)
    try:
        raise ObjectError("object 'o': section 'socket': rejected") from cause
    except ObjectError as err:
        _report(err, verbose=False)
    out = capsys.readouterr().err.splitlines()
    assert out[0] == "rawbpf: object 'o': section 'socket': rejected"
    assert any(ln.startswith("  | ") for ln in out)


def test_verbose_prints_the_whole_log(capsys: pytest.CaptureFixture) -> None:
    _report(VerifierError("load program 'p'", errno.EACCES, LOG), verbose=True)
    out = capsys.readouterr().err
    assert "--- verifier log ---" in out and "0: R1=ctx() R10=fp0" in out


def test_btf_refusal_is_shown_like_a_verifier_rejection(capsys: pytest.CaptureFixture) -> None:
    from rawbpf.errors import BTFLoadError

    log = "magic: 0xeb9f\n[1] INT int size=4\n[2] PTR (anon) type_id=9\ntype_id=9 Invalid type_id\n"
    err = BTFLoadError("load btf", "type_id=9 Invalid type_id", log, errno.EINVAL)
    _report(err.with_context("object 'o': section '.BTF'"), verbose=False)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == ("rawbpf: object 'o': section '.BTF': load btf: kernel refused btf: "
                        "type_id=9 Invalid type_id")
    assert lines[-2] == "  | type_id=9 Invalid type_id" and lines[-1] == "  (the full btf log: --verbose)"
