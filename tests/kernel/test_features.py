"""Feature probes against the real kernel: every probe answers (True on this kernel), answers are cached,
negative answers are real, a missing privilege raises instead of answering False, and no probe leaks an fd."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from kernel_limits import release, version

from rawbpf import features
from rawbpf._types import ALL_LAYOUTS
from rawbpf.errors import NotSupportedError
from rawbpf.features import Feature, _Blob, _btf_loads

ROOT = Path(__file__).resolve().parents[2]
NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


@pytest.fixture()
def fresh_cache() -> Iterator[None]:
    features.reset_cache()
    yield
    features.reset_cache()


def test_every_probe_answers_true_from_its_first_release(fresh_cache: None) -> None:
    # a probe answers True exactly on kernels at or after the release it names (6.18 has them all; 6.1 lacks
    # isa_v4 and btf_qmark_datasec): a False on a later kernel is a broken probe, a True on an older one a
    # wrong release in the table
    answers = features.probe_all()
    assert set(answers) == set(features.names())
    now = version(release())
    newer = {name for name in answers if version(features.feature(name).min_kernel) > now}
    assert {name for name, ok in answers.items() if not ok} == newer
    for name in ("ringbuf", "perf_link", "kernel_core", "mmapable_array", "btf_enum64", "btf_decl_tag",
                 "btf_type_tag", "btf_float", "btf_func_global", "bpf_loop", "bpf_stats"):
        assert name in answers


def test_answers_are_cached(fresh_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def probe() -> bool:
        calls.append(1)
        return False

    fake = Feature("fake_feature", "a fake feature", "9.9", probe)
    monkeypatch.setitem(features._FEATURES, "fake_feature", fake)
    assert features.has("fake_feature") is False
    assert features.has("fake_feature") is False
    assert len(calls) == 1
    with pytest.raises(NotSupportedError) as ei:
        features.require("fake_feature")
    assert str(ei.value) == "a fake feature is not supported by this kernel (needs Linux 9.9 or later)"
    features.reset_cache()
    features.has("fake_feature")
    assert len(calls) == 2


def test_unknown_probe_name_is_one_line() -> None:
    with pytest.raises(Exception, match="feature probe 'nope': unknown"):
        features.has("nope")


def test_negative_answers_are_real() -> None:
    assert features.has_helper(0x7FFF0000) is False
    assert features.has_helper(181) is True
    bad = _Blob()
    bad.t("x", 31, 0, 4)  # kind 31 does not exist
    assert _btf_loads(bad) is False
    good = _Blob()
    good.int32()
    assert _btf_loads(good) is True


def test_btf_features_for_the_sanitiser() -> None:
    f = features.btf_features()
    assert all(getattr(f, name) for name in ("func", "func_global", "datasec", "float", "decl_tag",
                                             "type_tag", "enum64"))
    assert f.qmark_datasec == features.has("btf_qmark_datasec")  # 6.9


def test_missing_privilege_raises_instead_of_answering_false() -> None:
    code = ("import json\nfrom rawbpf import features\nfrom rawbpf.errors import SyscallError\nout = {}\n"
            "for n in ('bpf', 'ringbuf', 'btf_float', 'kernel_core', 'perf_link'):\n"
            "    try:\n        out[n] = features.has(n)\n"
            "    except SyscallError as e:\n        out[n] = e.errno\n"
            "print(json.dumps(out))\n")
    res = subprocess.run([*NO_CAPS, sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    names = ("bpf", "ringbuf", "btf_float", "kernel_core", "perf_link")
    assert json.loads(res.stdout) == dict.fromkeys(names, 1)  # EPERM, not False


@pytest.mark.parametrize("reader", [[], ["--bpftool"]], ids=["rawbpf.btf", "bpftool"])
def test_check_types_tool_agrees_with_the_kernel(reader: list) -> None:
    tool = str(ROOT / "tools" / "check_types.py")
    res = subprocess.run([sys.executable, tool, *reader], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"{len(ALL_LAYOUTS)} layouts match" in res.stdout


def test_check_types_tool_catches_a_wrong_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import check_types
    finally:
        sys.path.pop(0)

    class Wrong(ctypes.Structure):
        _kernel_ = ("bpf_attr", "test")
        _names_: dict = {}
        _fields_ = [("prog_fd", ctypes.c_uint32), ("data_size_in", ctypes.c_uint32)]

    monkeypatch.setattr(check_types.T, "ALL_LAYOUTS", (Wrong,))
    for types in (check_types.load_types("/sys/kernel/btf/vmlinux"),
                  check_types.RawbpfTypes("/sys/kernel/btf/vmlinux")):
        assert check_types.check(types) == ["Wrong.data_size_in: offset 4, kernel says 8"]


def test_check_types_tool_accepts_later_fields_past_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    # rawbpf's attrs carry fields of newer kernels; an older kernel takes the longer attr while that tail is
    # zero, so such a field past the kernel's end is not a mismatch, but an unknown field inside it is
    import ctypes

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import check_types
    finally:
        sys.path.pop(0)
    types = check_types.RawbpfTypes("/sys/kernel/btf/vmlinux")
    ksize = check_types.kernel_layout(types, type("Probe", (), {"_kernel_": ("bpf_attr", "test")}))[1]

    class Later(ctypes.Structure):
        _kernel_ = ("bpf_attr", "test")
        _names_: dict = {}
        _fields_ = [("prog_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint8 * (ksize - 4)),
                    ("rawbpf_future", ctypes.c_uint32)]

    class Inside(ctypes.Structure):
        _kernel_ = ("bpf_attr", "test")
        _names_: dict = {}
        _fields_ = [("prog_fd", ctypes.c_uint32), ("rawbpf_future", ctypes.c_uint32)]

    monkeypatch.setattr(check_types.T, "ALL_LAYOUTS", (Later, Inside))
    assert check_types.check(types) == ["Inside.rawbpf_future: the kernel has no such field"]
