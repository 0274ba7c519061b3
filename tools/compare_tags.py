"""Compare rawbpf with libbpf (Debian libbpf-dev) on any BPF objects on this kernel: verdicts, program tags.

usage: sudo python3 tools/compare_tags.py [OBJ...] [--corpus DIR] [--jobs N] [--json FILE] [--all]

Builds tools/libbpf_loader.c with gcc and loads each object with libbpf, then with rawbpf twice (CO-RE in the
kernel and in user space), each object in a forked child with a time limit so that a hang, a crash or an
exception that is not a ``RawBPFError`` is caught and counted. When libbpf cannot load a whole object on this
kernel (fentry/fexit/LSM programs, which this kernel refuses), the programs of the kinds the kernel can load
are compared on their own ("libbpf loads something"). Verdicts agree when both load the same programs or both
refuse them; tags are compared program by program where both load.

``--corpus DIR`` takes the output of tools/build_corpus.sh: one directory per build (compiler x -mcpu) with
``sources.txt`` (every source tried) and ``<project>/<name>.o``; the summary is one table row per build
(OBJ... with ``--corpus``: only these objects of it). Objects with struct_ops maps or programs are counted on
their own and compared only with ``--struct-ops``. Prints a line for each disagreement (``--all``: for each
object); exits 1 on any.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from elftools.elf.elffile import ELFFile  # noqa: E402

from rawbpf.collection import Collection  # noqa: E402
from rawbpf.consts import AttachType, ProgType  # noqa: E402
from rawbpf.elf import load_spec  # noqa: E402
from rawbpf.errors import RawBPFError  # noqa: E402
from rawbpf.spec import MapKind  # noqa: E402

_NOT_HERE = (AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT, AttachType.MODIFY_RETURN)
TIMEOUT = 600  # seconds per object; the verifier takes minutes on the largest selftests
COMPARE_STRUCT_OPS = False  # --struct-ops


@dataclass
class Result:
    """What happened to one object."""

    obj: str
    build: str = ""
    struct_ops: bool = False
    libbpf: str = "refused"  # "all", "subset", "refused"
    programs: List[str] = field(default_factory=list)  # the subset tried, empty for libbpf's default set
    rawbpf: Dict[str, str] = field(default_factory=dict)  # CO-RE way -> "loaded" / "refused: ..." / ...
    tags_equal: int = 0
    tags_total: int = 0
    agree: bool = True
    only_rawbpf: bool = False  # rawbpf loads what libbpf refuses
    escaped: str = ""  # an exception that is not a RawBPFError, a crash or a timeout
    note: str = ""

    def line(self) -> str:
        name = f"{self.build}/{self.obj}" if self.build else self.obj
        if self.escaped:
            return f"{name}: ESCAPED {self.escaped}"
        if self.struct_ops and not self.rawbpf:
            return f"{name}: struct_ops object, not compared (libbpf {self.libbpf}){self.note}"
        ways = "; ".join(f"{k} CO-RE: {v}" for k, v in self.rawbpf.items())
        subset = f" (subset: {len(self.programs)} programs)" if self.programs else ""
        head = "agree" if self.agree else "DISAGREE"
        tags = f", tags {self.tags_equal}/{self.tags_total}" if self.tags_total else ""
        return f"{name}: {head}: libbpf {self.libbpf}{subset}{tags}; rawbpf {ways}{self.note}"


def build_loader(tmp: str) -> str:
    out = os.path.join(tmp, "libbpf_loader")
    src = str(ROOT / "tools" / "libbpf_loader.c")
    subprocess.run(["gcc", "-O1", "-Wall", "-o", out, src, "-lbpf"], check=True)
    return out


def libbpf_tags(loader: str, obj: str, pin: str, progs: List[str]) -> Optional[Dict[str, str]]:
    try:
        r = subprocess.run([loader, obj, pin, *progs], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode:
        return None
    return {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}


def rawbpf_tags(obj: str, pin: str, progs: List[str], kernel_core: bool) -> Dict[str, str]:
    coll = Collection.load(load_spec(obj), pin_dir=pin, kernel_core=kernel_core, programs=progs or None)
    try:
        return {n: p.info().tag.hex() for n, p in coll.programs.items()}
    finally:
        coll.close(keep_pinned_maps=False)


def has_struct_ops(obj: str) -> bool:
    with open(obj, "rb") as f:
        return any(s.name.startswith((".struct_ops", "struct_ops")) for s in ELFFile(f).iter_sections())


def compare(loader: str, obj: str, pin: str) -> Result:
    """Load one object with libbpf and both ways with rawbpf (runs in a child)."""
    res = Result(obj=obj, struct_ops=has_struct_ops(obj))
    want = libbpf_tags(loader, obj, pin, [])
    if want is not None:
        res.libbpf = "all"
    try:
        spec = load_spec(obj)
    except RawBPFError as err:
        res.rawbpf = {"both": f"refused: {err.summary()}"}
        res.agree = want is None
        return res
    if any(m.struct_ops is not None and m.struct_ops.link for m in spec.maps.values()):
        # libbpf 1.1 skips the section as unrecognised data and loads the object without those maps
        res.note = " (.struct_ops.link: libbpf 1.1 ignores the section, it came in libbpf 1.2; not compared)"
        return res
    # struct_ops programs in SEC("?struct_ops/...") that a struct_ops map uses: libbpf 1.4+ loads them (as
    # rawbpf does), libbpf 1.1 leaves them out
    st_extra = {n for n, p in spec.programs.items() if p.type == ProgType.STRUCT_OPS and not p.autoload
                and any(m.struct_ops is not None and n in m.struct_ops.funcs.values()
                        for m in spec.maps.values())}
    if want is None:
        res.programs = sorted(n for n, p in spec.programs.items() if p.autoload and p.type != ProgType.LSM
                              and not (p.type == ProgType.TRACING and p.expected_attach_type in _NOT_HERE))
        if res.programs and len(res.programs) < sum(p.autoload for p in spec.programs.values()):
            want = libbpf_tags(loader, obj, pin, res.programs)
            if want is not None:
                res.libbpf = "subset"
        else:
            res.programs = []
    if res.struct_ops and not COMPARE_STRUCT_OPS:
        return res
    for way, kernel_core in (("kernel", True), ("user", False)):
        try:
            got = rawbpf_tags(obj, pin, res.programs, kernel_core)
        except RawBPFError as err:
            res.rawbpf[way] = f"refused: {err.summary()}"
            res.agree = res.agree and want is None
            continue
        except Exception as err:  # counted: only RawBPFError may leave the loader
            tb = traceback.extract_tb(err.__traceback__)[-1]
            res.escaped = f"{type(err).__name__}: {err} ({Path(tb.filename).name}:{tb.lineno})"
            res.agree = False
            return res
        if st_extra and not res.programs and want is not None:
            got = {k: v for k, v in got.items() if k not in st_extra or k in want}
        res.rawbpf[way] = f"loaded {len(got)}"
        if want is None:
            res.agree = False
            res.only_rawbpf = True
            if any(m.kind == MapKind.LEGACY for m in spec.maps.values()):
                res.note = " (legacy SEC(\"maps\") maps: libbpf 1.0+ refuses them, rawbpf loads them)"
            elif not spec.programs:
                res.note = (" (no entry programs: libbpf 1.1 takes its lone .text function for one,"
                            " refused; libbpf 1.5 loads the object)")
            else:
                res.note = " (rawbpf loads what libbpf 1.1 refuses)"
            continue
        same = sum(1 for k, v in want.items() if got.get(k) == v)
        res.tags_equal += same
        res.tags_total += len(want)
        if same != len(want) or set(got) != set(want):
            res.agree = False
            diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
            res.note += f" ({way} CO-RE tags differ: {diff})"
    return res


def _child(loader: str, obj: str, pin: str, w: int) -> None:
    os.setpgid(0, 0)
    quiet = os.open(os.devnull, os.O_WRONLY)  # the loaders' warnings; what matters is in the result
    os.dup2(quiet, 2)
    try:
        data = asdict(compare(loader, obj, pin))
    except BaseException as err:  # reported to the parent, which counts it
        tb = traceback.extract_tb(err.__traceback__)[-1]
        data = asdict(Result(obj=obj, agree=False, escaped=f"{type(err).__name__}: {err} "
                                                            f"({Path(tb.filename).name}:{tb.lineno})"))
    finally:
        shutil.rmtree(pin, ignore_errors=True)
    payload = json.dumps(data).encode()
    while payload:
        payload = payload[os.write(w, payload):]
    os._exit(0)


def run_all(loader: str, objects: List[Tuple[str, str]], pin_root: str, jobs: int,
            show_all: bool) -> List[Result]:
    """Run compare() on each (build, object) in forked children, ``jobs`` at a time."""
    pending = list(objects)
    # read end of a child's pipe -> (pid, build, object, start, bytes read)
    running: Dict[int, Tuple[int, str, str, float, bytearray]] = {}
    results: List[Result] = []
    while pending or running:
        while pending and len(running) < jobs:
            build, obj = pending.pop(0)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                _child(loader, obj, os.path.join(pin_root, str(os.getpid())), w)
            os.close(w)
            running[r] = (pid, build, obj, time.monotonic(), bytearray())
        ready, _, _ = select.select(list(running), [], [], 5)
        now = time.monotonic()
        for r in list(running):
            pid, build, obj, start, buf = running[r]
            done = False
            if r in ready:
                chunk = os.read(r, 65536)
                buf += chunk
                done = not chunk
            if not done and now - start > TIMEOUT:
                os.killpg(pid, signal.SIGKILL)
                done = True
            if not done:
                continue
            os.close(r)
            _, status = os.waitpid(pid, 0)
            del running[r]
            try:
                res = Result(**json.loads(buf))
            except ValueError:
                why = (f"timeout after {TIMEOUT}s" if now - start > TIMEOUT
                       else f"child died ({os.waitstatus_to_exitcode(status)})")
                res = Result(obj=obj, agree=False, escaped=why)
            res.build = build
            res.obj = os.path.relpath(obj, os.path.join(os.path.dirname(obj), "..")) if build else obj
            results.append(res)
            if show_all or not res.agree or res.escaped:
                print(res.line(), flush=True)
    return results


def corpus_objects(corpus: str) -> Tuple[List[Tuple[str, str]], Dict[str, int]]:
    """(build, object path) for every object of every build, and the number of sources each build tried."""
    objects: List[Tuple[str, str]] = []
    sources: Dict[str, int] = {}
    for build in sorted(p for p in Path(corpus).iterdir() if (p / "sources.txt").exists()):
        sources[build.name] = len((build / "sources.txt").read_text().split())
        objects += [(build.name, str(o)) for o in sorted(build.glob("*/*.o"))]
    return objects, sources


def table(results: List[Result], sources: Dict[str, int]) -> str:
    """The summary: one row per build."""
    head = ("build", "objects", "compiled", "struct_ops objects", "libbpf loads something",
            "rawbpf loads the same", "same tags (programs)", "verdicts agree",
            "rawbpf loads, libbpf 1.1 refuses", "exceptions escaped")
    rows = [head]
    builds = list(sources) or sorted({r.build for r in results})
    for build in [*builds, "total"] if len(builds) > 1 else builds:
        rs = [r for r in results if r.build == build or build == "total"]
        cmp_ = [r for r in rs if not r.struct_ops or r.escaped or r.rawbpf]
        some = [r for r in cmp_ if r.libbpf != "refused"]
        same = [r for r in some if r.agree and not r.escaped]
        rows.append((
            build,
            str(sum(sources.values()) if build == "total" else sources.get(build, len(rs))),
            str(len(rs)),
            f"{sum(r.struct_ops for r in rs)} ({len(rs) - len(cmp_)} apart)",
            str(len(some)),
            f"{len(same)}/{len(some)}",
            f"{sum(r.tags_equal for r in cmp_)}/{sum(r.tags_total for r in cmp_)}",
            f"{sum(r.agree for r in cmp_)}/{len(cmp_)}",
            str(sum(r.only_rawbpf for r in cmp_)),
            str(sum(bool(r.escaped) for r in rs)),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    fmt = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(fmt(r) for r in rows[1:])])


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("objects", nargs="*")
    ap.add_argument("--corpus", help="output directory of tools/build_corpus.sh")
    ap.add_argument("--build", action="append", help="with --corpus: only this build (repeatable)")
    ap.add_argument("--from-json", nargs="+", metavar="FILE",
                    help="print the table of earlier --json results instead of loading anything")
    ap.add_argument("--skip-json", nargs="+", metavar="FILE", default=[],
                    help="with --corpus: leave out the objects these earlier --json results cover")
    ap.add_argument("--struct-ops", action="store_true",
                    help="compare struct_ops objects too instead of only counting them")
    ap.add_argument("--jobs", type=int, default=1, help="objects compared at once (default 1)")
    ap.add_argument("--json", help="write every object's result to this file")
    ap.add_argument("--all", action="store_true",
                    help="print a line for every object, not only disagreements")
    ap.add_argument("--pin-root", default=f"/sys/fs/bpf/rawbpf-compare-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    args = ap.parse_args()
    global COMPARE_STRUCT_OPS
    COMPARE_STRUCT_OPS = args.struct_ops
    objects = [(Path(o).parent.parent.name if args.corpus else "", o) for o in args.objects]
    sources: Dict[str, int] = {}
    if args.corpus:
        more, sources = corpus_objects(args.corpus)
        objects += [(b, o) for b, o in more if not args.build or b in args.build] if not objects else []
        sources = {b: n for b, n in sources.items() if not args.build or b in args.build}
    done = {(r["build"], r["obj"]) for f in args.skip_json for r in json.loads(Path(f).read_text())}
    objects = [(b, o) for b, o in objects
               if (b, os.path.relpath(o, os.path.join(os.path.dirname(o), ".."))) not in done]
    if args.from_json:
        results = [Result(**r) for f in args.from_json for r in json.loads(Path(f).read_text())]
        print(table(results, sources))
        sys.exit(0 if all(r.agree and not r.escaped for r in results) else 1)
    if not objects:
        ap.error("no objects (give OBJ... or --corpus DIR)")
    tmp = tempfile.mkdtemp(prefix="rawbpf-compare-")
    os.makedirs(args.pin_root, exist_ok=True)
    try:
        loader = build_loader(tmp)
        results = run_all(loader, objects, args.pin_root, max(1, args.jobs), args.all)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(args.pin_root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    print(table(results, sources))
    sys.exit(0 if all(r.agree and not r.escaped for r in results) else 1)


if __name__ == "__main__":
    main()
