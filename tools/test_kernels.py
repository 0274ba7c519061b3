#!/usr/bin/env python3
"""make test-kernels: the kernel tests and a monitor workload on the running kernel and on Debian 12's 6.1.

For each kernel this prints one line, ``kernel 6.1.0-NN-amd64: N passed, N failed, N skipped``, then the
kernel limits that were skipped (each proven by a probe on that kernel, see tests/kernel/kernel_limits.py),
the failures, the monitor's attach time and where it ran. Exits non-zero when anything failed or a kernel
could not be booted.

- The running kernel is tested directly on this host, in a private mount namespace where tracefs, debugfs
  and bpffs start unmounted (as on a fresh machine): rawbpf's own mounting is what makes the tests pass.
- Debian's kernel: the newest ``linux-image-6.1.0-NN-amd64`` apt knows is fetched with ``apt-get download``
  and unpacked (``dpkg-deb -x``) into a cache under ``build/kernels`` (never installed as a host kernel), then
  booted with virtme-ng under qemu with TCG (``--disable-kvm``; KVM guests stall on this kind of VM) with the
  host's root filesystem read-only, this tree as a copy-on-write overlay and the results directory writable.
  In the guest, the kernel package's /boot (its config, which libbpf and Kconfig externs read) is mounted
  over /boot, as an installed kernel would have it, and the same steps run as on the host.

Inside (host namespace or guest) the steps are: ``pytest tests/kernel`` with ``RAWBPF_REQUIRE_KERNEL=1`` (in
the guest without the tests that drive the real Claude Code CLI, see VM_MARKS), and the monitor workload:
``rawbpf load programs/claude_monitor.o`` (attach time measured), the scripted workload of tests/workload, its
records checked through ``rawbpf tail --json``, and a clean stop (nothing left pinned).

    tools/test_kernels.py [--kernel 6.1] [--no-host | --no-vm] [--timeout S] [--cpus N] [--memory M] [TESTS]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TESTS = ["tests/kernel"]
# in the emulated guest: every kernel test but those that drive the real Claude Code CLI (marker claude_cli).
# Those exercise the same monitor programs as the monitor tests, which do run there; an emulated Claude CLI
# session takes minutes, and the four of them would double the guest's time.
VM_MARKS = "not slow and not claude_cli"
HOST_MARKS = "not slow"
SERIES_RE = re.compile(r"^\d+\.\d+$")


def log(msg: str) -> None:
    print(f"test-kernels: {msg}", flush=True)


# --- the kernel package ------------------------------------------------------------------------------


def newest_package(series: str) -> str:
    """The newest Debian kernel image of ``series`` (``6.1`` -> ``linux-image-6.1.0-57-amd64``)."""
    pattern = rf"^linux-image-{re.escape(series)}\.0-[0-9]+-amd64$"

    def search() -> List[str]:
        out = subprocess.run(["apt-cache", "search", "--names-only", pattern], capture_output=True,
                             text=True, check=False).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    names = search()
    if not names:
        log("apt knows no kernel of that series yet: apt-get update")
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"], check=False)
        names = search()
    if not names:
        raise SystemExit(f"test-kernels: no Debian package matches {pattern}")
    return max(names, key=lambda n: int(n.split("-")[3]))


def fetch_kernel(package: str, cache: Path) -> Path:
    """Download and unpack ``package`` into ``cache/<release>`` once; returns that directory."""
    release = package[len("linux-image-"):]
    dest = cache / release
    if (dest / "boot" / f"vmlinuz-{release}").exists():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        log(f"apt-get download {package}")
        # as root, apt would drop to the _apt user, who cannot write this directory
        subprocess.run(["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", package], cwd=tmp,
                       check=True, stdout=subprocess.DEVNULL)
        deb = next(Path(tmp).glob("*.deb"))
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        if dest.exists():
            shutil.rmtree(dest)
        unpacked.rename(dest)
    return dest


# --- running the tests --------------------------------------------------------------------------------


def vng_command(kdir: Path, release: str, name: str, out: Path, args: argparse.Namespace,
                inner: List[str]) -> List[str]:
    vng = Path(sys.executable).parent / "vng"
    return [str(vng), "--run", str(kdir / "boot" / f"vmlinuz-{release}"), "--disable-kvm",
            "--cpus", str(args.cpus), "--memory", args.memory, "--name", "rawbpf-test-kernels",
            "--overlay-rwdir", str(ROOT), "--rwdir", str(out), "--cwd", str(ROOT),
            "--exec", _script(out, name, inner)]


def _script(out: Path, release: str, inner: List[str]) -> str:
    """The guest's command as a script in ``out``: vng passes --exec on the kernel command line, which the
    kernel cuts at 2048 bytes (a long list of tests left the guest waiting for a command it never got)."""
    script = out / f"{release}.sh"
    script.write_text("#!/bin/sh\nexec " + " ".join(_quote(a) for a in inner) + "\n")
    script.chmod(0o755)
    return str(script)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[A-Za-z0-9_./=:+,@%-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def run_bounded(cmds: List[List[str]], timeout: float) -> List[Optional[int]]:
    """Run ``cmds`` at once, each in its own process group, output passed through; their exit codes, None for
    one stopped at ``timeout``."""
    # vng starts virtme-run, which sits beside this interpreter in the venv
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    procs = [subprocess.Popen(cmd, start_new_session=True, env=env, stdin=subprocess.DEVNULL) for cmd in cmds]
    deadline = time.monotonic() + timeout
    codes: List[Optional[int]] = []
    try:
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
        return codes
    finally:  # the timeout, or this run stopped (SIGINT, SIGTERM): the VMs or namespace go with it
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# Seconds each kernel test file took in a 6.1 TCG guest (one full run, two guests at once on the busy 2-core
# VM; a file not listed counts as DEFAULT_COST), and the monitor workload, which runs in the first guest after
# its tests. Only used to split the files over guests that run at once, each mostly one busy host thread.
COSTS = {
    "test_monitor_e2e.py": 915, "test_cli_load.py": 665, "test_log_guarantees.py": 460,
    "test_monitor_env.py": 360, "test_monitor_program.py": 350, "test_monitor_files.py": 305,
    "test_cli_load_crash.py": 275, "test_attach.py": 265, "test_ship_load.py": 235, "test_tracefs.py": 200,
    "test_daemon.py": 130, "test_monitor_dns_tcp.py": 115, "test_libbpf_tags.py": 110,
    "test_doctor.py": 105, "test_monitor_attrib.py": 100, "test_load_externs.py": 100,
    "test_btf_load.py": 80, "test_monitor_renamed.py": 80, "test_asm_xlated.py": 70, "test_features.py": 65,
    "test_monitor_dns.py": 55, "test_struct_ops.py": 55, "test_core_libbpf.py": 50, "test_btf_libbpf.py": 40,
    "test_asm_exec_count.py": 35, "test_collection.py": 30, "test_maps.py": 30, "test_load_sections.py": 20,
    "test_libbpf_conformance.py": 15, "test_maps_errors.py": 15,
}
DEFAULT_COST = 10
WORKLOAD_COST = 150


def split_tests(tests: List[str], parts: int) -> List[List[str]]:
    """``tests`` (directories, files, node ids) as ``parts`` lists of about equal cost, whole files kept
    together (module-scoped fixtures); fewer lists when there are fewer files."""
    files: Dict[str, List[str]] = {}
    for t in tests:
        path = ROOT / t.split("::")[0]
        if path.is_dir():
            for found in sorted(path.glob("test_*.py")):
                files.setdefault(str(found.relative_to(ROOT)), [])
        else:
            files.setdefault(t.split("::")[0], []).append(t)
    groups: List[List[str]] = [[] for _ in range(max(1, min(parts, len(files))))]
    load = [WORKLOAD_COST] + [0] * (len(groups) - 1)  # the first guest also runs the monitor workload
    for name in sorted(files, key=lambda n: -COSTS.get(Path(n).name, DEFAULT_COST)):
        i = load.index(min(load))
        load[i] += COSTS.get(Path(name).name, DEFAULT_COST)
        groups[i].extend(files[name] or [name])
    return groups


def inner_command(out: Path, name: str, tests: List[str], boot: Optional[Path], marks: str,
                  workload: bool = True) -> List[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", str(out), "--name", name,
           "--marks", marks]
    if boot is not None:
        cmd += ["--boot", str(boot)]
    if not workload:
        cmd += ["--no-workload"]
    return [*cmd, "--", *tests]


# --- inside: the host's private namespace or the guest ----------------------------------------------


MOUNTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing", "/sys/kernel/debug", "/sys/fs/bpf")


def fresh_mounts() -> List[str]:
    """Unmount tracefs, debugfs and bpffs (in this mount namespace only): they start as on a fresh machine."""
    gone = []
    for path in MOUNTS:
        while subprocess.run(["mountpoint", "-q", path], check=False).returncode == 0:
            if subprocess.run(["umount", path], check=False).returncode != 0:
                break
            gone.append(path)
    return gone


# In a TCG guest every instruction is emulated (a monitor load takes ~20 s instead of 2 s; more on busy
# cores): the kernel tests' hang guards are multiplied by this there (tests/kernel/patience.py), not checks.
GUEST_TIME_SCALE = 10


def run_pytest(out: Path, name: str, tests: List[str], marks: str, time_scale: int) -> int:
    env = dict(os.environ, RAWBPF_REQUIRE_KERNEL="1", RAWBPF_TEST_TIME_SCALE=str(time_scale))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra", "-m", marks,
           f"--junitxml={out / (name + '.xml')}", *tests]
    with open(out / f"{name}.log", "w") as logf:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        # as it comes (pytest -q ends a line of progress dots only every 72 tests)
        while chunk := proc.stdout.read1(4096):  # type: ignore[attr-defined]
            text = chunk.decode(errors="replace")
            logf.write(text)
            logf.flush()
            sys.stdout.write(text)
            sys.stdout.flush()
        return proc.wait()


def monitor_workload(work: Path, scale: int) -> Dict[str, Any]:
    """Load the monitor through the CLI, run the scripted workload, check its records; a dict of results."""
    py = sys.executable
    logs, pins = work / "logs", Path(f"/sys/fs/bpf/rawbpf-test-kernels-{os.getpid()}")
    res: Dict[str, Any] = {"problems": []}
    problems: List[str] = res["problems"]
    start = time.monotonic()
    mon = subprocess.Popen([py, "-m", "rawbpf", "load", "programs/claude_monitor.o", "--log-dir", str(logs),
                            "--pin-dir", str(pins), "--no-seed", "--endpoint", "127.0.0.0/8=loopback-test"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert mon.stdout is not None and mon.stderr is not None
    lines = []
    for line in mon.stdout:
        lines.append(line)
        if line.startswith("logging to "):
            res["attach_s"] = round(time.monotonic() - start, 2)
            break
    if "attach_s" not in res:
        mon.wait()
        problems.append(f"monitor did not attach: {''.join(lines)}{mon.stderr.read()}".strip())
        return res
    try:
        drv = subprocess.run([py, "tests/workload/driver.py", "--dir", str(work / "workload")], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        if drv.returncode != 0:
            problems.append(f"workload failed: {drv.stderr.strip()}")
            return res
        man = json.loads(drv.stdout)
        claude = man["claude"]["pid"]
        recs: List[Dict[str, Any]] = []
        deadline = time.monotonic() + 60 * scale
        while time.monotonic() < deadline:
            tail = subprocess.run([py, "-m", "rawbpf", "tail", "--json", "--log-dir", str(logs)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=300)
            recs = [json.loads(x) for x in tail.stdout.splitlines() if x.strip()]
            if any(r.get("type") == "exit" and r.get("pid") == claude for r in recs):
                break
            time.sleep(1)
        tree = [r for r in recs if r.get("root_pid") == claude]
        res["records"] = len(tree)
        kinds = {r["type"] for r in tree}
        if not kinds >= {"connect", "exec", "exit", "fork", "rename"}:
            problems.append(f"record types of the claude tree: {sorted(kinds)}")
        execs = [r for r in tree if r["type"] == "exec" and r["pid"] == claude]
        if not execs or execs[0].get("filename") != man["claude"]["filename"]:
            problems.append("no exec record of the claude process with its filename")
        exits = [r for r in tree if r["type"] == "exit" and r["pid"] == claude]
        if not exits or exits[0].get("exit_code") != man["claude"]["exit_code"]:
            problems.append(f"claude's exit record: {exits}")
        connects = [r for r in tree if r["type"] == "connect"]
        if len(connects) != 6 or not any(r.get("endpoint") == "loopback-test" for r in connects):
            problems.append(f"{len(connects)} connect records (6 expected, to a loopback-test endpoint)")
        unrelated = {man["claude_not"]["pid"], man["busy"]["pid"]}
        if [r for r in recs if r.get("pid") in unrelated or r.get("root_pid") in unrelated]:
            problems.append("records of processes that are not Claude's")
        if man["api_key"] in json.dumps(recs):
            problems.append("the workload's API key reached the log")
        if [r for r in recs if r.get("type") == "lost"]:
            problems.append("lost records")
    finally:
        mon.send_signal(signal.SIGINT)
        try:
            _, err = mon.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            mon.kill()
            _, err = mon.communicate()
        if mon.returncode != 0:
            problems.append(f"monitor exited {mon.returncode}: {err.strip()}")
        left = sorted(str(p) for p in pins.rglob("*")) if pins.exists() else []
        if left:
            problems.append(f"left pinned: {left}")
        if pins.exists() and not left:
            pins.rmdir()
    return res


def inside(args: argparse.Namespace) -> int:
    out = Path(args.inside)
    out.mkdir(parents=True, exist_ok=True)
    if args.boot:
        subprocess.run(["mount", "--bind", args.boot, "/boot"], check=True)
    summary: Dict[str, Any] = {"release": os.uname().release, "unmounted": fresh_mounts()}
    scale = GUEST_TIME_SCALE if args.boot else 1
    os.environ["RAWBPF_TEST_TIME_SCALE"] = str(scale)  # for the workload driver too
    summary["pytest_exit"] = run_pytest(out, args.name, args.tests or DEFAULT_TESTS, args.marks, scale)
    if not args.no_workload:
        with tempfile.TemporaryDirectory(prefix="rawbpf-test-kernels-") as work:
            summary["monitor"] = monitor_workload(Path(work), scale)
    (out / f"{args.name}.json").write_text(json.dumps(summary, indent=2))
    return 0


# --- the summary -----------------------------------------------------------------------------------------


def summarise(out: Path, release: str, names: List[str], where: str, seconds: float) -> bool:
    """Print the kernel's lines from what the inside runs ``names`` (one per guest or namespace) left in
    ``out``; True when it all passed."""
    passed = failed = skipped = 0
    limits: List[str] = []
    failures: List[str] = []
    mon: Dict[str, Any] = {}
    for name in names:
        xml, js = out / f"{name}.xml", out / f"{name}.json"
        if not xml.exists() or not js.exists():
            failed += 1
            failures.append(f"{name}: no results, the run did not finish; see the output above")
            continue
        summary = json.loads(js.read_text())
        release = summary["release"]
        part_failures = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            test = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
            bad = case.find("failure") is not None or case.find("error") is not None
            skip = case.find("skipped")
            if bad:
                failed += 1
                part_failures.append(test)
            elif skip is not None:
                skipped += 1
                limits.append(f"{test}: {skip.get('message', '')}")
            else:
                passed += 1
        if "monitor" in summary:
            mon = summary["monitor"]
            if mon.get("problems"):
                failed += 1
            else:
                passed += 1
        if summary.get("pytest_exit") not in (0, 1) and not part_failures:
            failed += 1
            part_failures.append(f"{name}: pytest exited {summary.get('pytest_exit')}")
        failures += part_failures
    print(f"kernel {release}: {passed} passed, {failed} failed, {skipped} skipped")
    print(f"  ran {where} in {seconds:.0f} s; tests and the monitor workload (counted as one test)")
    if "attach_s" in mon:
        print(f"  monitor: attached in {mon['attach_s']} s, {mon.get('records', 0)} records of the workload's"
              f" claude tree" + ("" if not mon.get("problems") else ", but:"))
    for p in mon.get("problems", []):
        print(f"    monitor: {p}")
    for s in limits:
        print(f"  skipped {s}")
    for f in failures:
        print(f"  FAILED {f}")
    return failed == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", action="append", default=None,
                    help="Debian kernel series (6.1) or image package to boot; repeatable (default: 6.1)")
    ap.add_argument("--no-host", action="store_true", help="do not run on the running kernel")
    ap.add_argument("--no-vm", action="store_true", help="only the running kernel: boot nothing")
    ap.add_argument("--cache", type=Path, default=ROOT / "build" / "kernels")
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds per kernel before it is stopped")
    ap.add_argument("--guests", type=int, default=2,
                    help="guests booted at once per kernel, the test files split between them (default 2)")
    ap.add_argument("--cpus", type=int, default=2, help="vCPUs per guest (default 2)")
    ap.add_argument("--memory", default="1536M")
    ap.add_argument("--inside", help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    ap.add_argument("--boot", help=argparse.SUPPRESS)
    ap.add_argument("--marks", default=HOST_MARKS, help=argparse.SUPPRESS)
    ap.add_argument("--no-workload", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("tests", nargs="*", help="pytest arguments (default: tests/kernel)")
    args = ap.parse_args()
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        raise SystemExit("test-kernels: needs root (kernel tests, a private mount namespace)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through run_bounded's cleanup
    tests = args.tests or DEFAULT_TESTS
    # this run's own directory: a concurrent run's guest may be writing into another
    out = args.cache / "results" / time.strftime(f"%Y%m%d-%H%M%S-{os.getpid()}")
    out.mkdir(parents=True)
    # compiled once here: in the guest every interpreter start would otherwise recompile under emulation
    subprocess.run([sys.executable, "-m", "compileall", "-q", "rawbpf", "tests", "tools"], cwd=ROOT,
                   check=False, stdout=subprocess.DEVNULL)
    ok = True
    lines: List[str] = []

    def record(release: str, names: List[str], where: str, t0: float) -> None:
        nonlocal ok
        from contextlib import redirect_stdout
        from io import StringIO
        buf = StringIO()
        with redirect_stdout(buf):
            ok = summarise(out, release, names, where, time.monotonic() - t0) and ok
        lines.append(buf.getvalue())
        print(buf.getvalue(), end="", flush=True)

    if not args.no_host:
        name = os.uname().release
        log(f"running kernel {name}: directly on this host, tracefs/debugfs/bpffs unmounted in a private"
            " mount namespace")
        t0 = time.monotonic()
        run_bounded([["unshare", "-m", "--propagation", "private", "--",
                      *inner_command(out, name, tests, None, HOST_MARKS)]], args.timeout)
        record(name, [name], "directly on this host (private mount namespace)", t0)
    for spec in [] if args.no_vm else args.kernel or ["6.1"]:
        package = newest_package(spec) if SERIES_RE.match(spec) else spec
        release = package[len("linux-image-"):]
        kdir = fetch_kernel(package, args.cache)
        groups = split_tests(tests, args.guests)
        names = [f"{release}.{i + 1}" for i in range(len(groups))]
        log(f"{release}: booting {len(groups)} guest(s) at once under qemu (TCG, {args.cpus} vCPU(s),"
            f" {args.memory} each), at most {args.timeout:.0f} s")
        for name, group in zip(names, groups):
            log(f"  {name}: {' '.join(Path(t).name for t in group)}")
        t0 = time.monotonic()
        codes = run_bounded([vng_command(kdir, release, name, out, args,
                                         inner_command(out, name, group, kdir / "boot", VM_MARKS, i == 0))
                             for i, (name, group) in enumerate(zip(names, groups))], args.timeout)
        for name, code in zip(names, codes):
            if code is None:
                log(f"{name}: stopped after {args.timeout:.0f} s")
        record(release, names, f"in {len(groups)} qemu TCG guest(s) at once ({args.cpus} vCPU(s),"
               f" {args.memory} each) booted from {package}; tests marked claude_cli left out", t0)
    print("== test-kernels")
    for chunk in lines:
        print(chunk.splitlines()[0])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
