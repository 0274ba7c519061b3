"""Load time: ``rawbpf load`` until "attached" (wall s, peak RSS) against ``bpftool prog loadall``; kernel.

Measures the monitor object (programs/claude_monitor.o) and the five-tracepoint CO-RE corpus object
(tests/data/tracepoints5.o). Every figure is the median of several cold process starts, the peers interleaved
run by run so a busy machine weighs on all of them alike. ``*_s`` is measured from spawning the process
(interpreter start-up included); ``*_self_reported_s`` is what rawbpf prints. rawbpf starts four ways, as
users run it: from the checkout with cached bytecode (``rawbpf_s``), from the checkout's sources without any
(``rawbpf_nocache_s``, as with ``PYTHONDONTWRITEBYTECODE=1`` and an editable install), the zipapp
(``zipapp_s``, ``make zipapp``) and an installed wheel (``wheel_s``). ``*_cpu_s`` is the user + system CPU
the process had used when it printed "attached" (bpftool's: until it exits): on a machine shared with other
work the wall times follow the CPU share each start gets, the CPU times what each start costs.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from tools.bench.common import (
    MONITOR_OBJ,
    ROOT,
    Context,
    bpffs_dir,
    child_env,
    median,
    rawbpf_load,
    run,
    scratch,
)

TP5 = ROOT / "tests" / "data" / "tracepoints5.o"


class Way:
    """One way of starting rawbpf: its command and environment, and what its starts measured."""

    def __init__(self, cmd: Optional[Sequence[str]] = None, env: Optional[Dict[str, str]] = None) -> None:
        self.cmd, self.env = cmd, env
        self.walls: List[float] = []
        self.reported: List[float] = []
        self.rss: List[float] = []
        self.cpu: List[float] = []

    def start(self, obj: Path, keep: bool = True) -> None:
        with bpffs_dir("load") as pins, scratch("load-log") as logs, \
                rawbpf_load(obj, pins, logs, cmd=self.cmd, env=self.env) as d:
            if keep:
                self.walls.append(d.attached_s)
                self.reported.append(d.reported_s)
                self.rss.append(d.rss_mb)
                self.cpu.append(d.cpu_s)

    def summary(self) -> Dict[str, float]:
        return {"s": round(median(self.walls), 4), "self_s": round(median(self.reported), 4),
                "rss_mb": round(max(self.rss), 1), "cpu_s": round(median(self.cpu), 3)}


def _bpftool(obj: Path, cpu: Optional[List[float]] = None) -> float:
    """Wall seconds of one ``bpftool prog loadall``; its user + system CPU seconds go to ``cpu``."""
    with bpffs_dir("bpftool") as pins:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        run(["bpftool", "prog", "loadall", str(obj), str(pins), "pinmaps", str(pins / "maps")], timeout=120)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cpu is not None:
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return wall


def _nocache(work: Path) -> Way:
    """The package's sources copied without bytecode; nothing is written back, so every start compiles it
    (the interpreter's and the dependencies' installed bytecode is used, as on a user's machine)."""
    src = work / "nocache"
    shutil.copytree(ROOT / "rawbpf", src / "rawbpf", ignore=shutil.ignore_patterns("__pycache__"))
    env = child_env()
    env.pop("PYTHONPYCACHEPREFIX", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = str(src)
    return Way([sys.executable, "-m", "rawbpf"], env)


def _zipapp(work: Path) -> Way:
    out = work / "rawbpf.pyz"
    run([sys.executable, str(ROOT / "tools" / "build_zipapp.py"), "-o", str(out)], timeout=300)
    env = child_env()
    env.pop("PYTHONPATH", None)
    return Way([sys.executable, str(out)], env)


def _wheel(work: Path) -> Way:
    """``pip wheel`` of the checkout installed (with its bytecode, as pip does) into a private directory."""
    wheels, site = work / "wheels", work / "site"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
         str(ROOT)], timeout=600)
    built = sorted(wheels.glob("rawbpf-*.whl"))
    if not built:
        raise RuntimeError("pip wheel built no rawbpf wheel")
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(built[-1])],
        timeout=600)
    env = child_env()
    env.pop("PYTHONPYCACHEPREFIX", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the installed bytecode is what is read
    env["PYTHONPATH"] = str(site)
    return Way([sys.executable, "-m", "rawbpf"], env)


def _try(make: Callable[[Path], Way], work: Path, errors: Dict[str, str], key: str) -> Optional[Way]:
    try:
        return make(work)
    except Exception as err:
        errors[key] = f"error: {err}"
        return None


def run_section(ctx: Context) -> Dict[str, Any]:
    runs = 3 if ctx.quick else 5
    out: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    work = ctx.work / "load"
    work.mkdir(exist_ok=True)
    ways: Dict[str, Optional[Way]] = {
        "rawbpf": Way(),
        "rawbpf_nocache": _try(_nocache, work, errors, "rawbpf_nocache_s"),
        "zipapp": _try(_zipapp, work, errors, "zipapp_s"),
        "wheel": _try(_wheel, work, errors, "wheel_s"),
    }
    bpftool: List[float] = []
    bpftool_cpu: List[float] = []
    for name, way in ways.items():  # the first start of each only fills caches
        if way is not None:
            try:
                way.start(MONITOR_OBJ, keep=False)
            except Exception as err:
                errors[f"{name}_s"] = f"error: {err}"
                ways[name] = None
    for _ in range(runs):
        try:
            bpftool.append(_bpftool(MONITOR_OBJ, bpftool_cpu))
        except Exception as err:
            errors["bpftool_s"] = f"error: {err}"
        for name, way in ways.items():
            if way is None:
                continue
            try:
                way.start(MONITOR_OBJ)
            except Exception as err:
                errors[f"{name}_s"] = f"error: {err}"
                ways[name] = None
    out["bpftool_s"] = round(median(bpftool), 4) if bpftool else errors.get("bpftool_s", "error: not run")
    if bpftool_cpu:
        out["bpftool_cpu_s"] = round(median(bpftool_cpu), 3)
    for name, way in ways.items():
        if way is None or not way.walls:
            out[f"{name}_s"] = errors.get(f"{name}_s", "error: not run")
            continue
        got = way.summary()
        out[f"{name}_s"], out[f"{name}_rss_mb"], out[f"{name}_self_reported_s"] = \
            got["s"], got["rss_mb"], got["self_s"]
        out[f"{name}_cpu_s"] = got["cpu_s"]
        if isinstance(out["bpftool_s"], float) and out["bpftool_s"] > 0:
            suffix = "" if name == "rawbpf" else "_" + name.replace("rawbpf_", "")
            out[f"ratio{suffix}_vs_bpftool"] = round(got["s"] / out["bpftool_s"], 2)
            if out.get("bpftool_cpu_s"):
                out[f"cpu_ratio{suffix}_vs_bpftool"] = round(got["cpu_s"] / out["bpftool_cpu_s"], 2)
    # the small corpus object, same interleaving
    tp5, tp5_bpftool = Way(), []
    try:
        tp5.start(TP5, keep=False)
        for _ in range(runs):
            tp5_bpftool.append(_bpftool(TP5))
            tp5.start(TP5)
        got = tp5.summary()
        out["tracepoints5_rawbpf_s"], out["tracepoints5_rawbpf_rss_mb"] = got["s"], got["rss_mb"]
        out["tracepoints5_rawbpf_self_reported_s"] = got["self_s"]
        out["tracepoints5_bpftool_s"] = round(median(tp5_bpftool), 4)
    except Exception as err:
        out["tracepoints5_rawbpf_s"] = f"error: {err}"
    out["runs"] = runs
    out["load_threads"] = os.environ.get("RAWBPF_LOAD_THREADS") or os.cpu_count()
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return out
