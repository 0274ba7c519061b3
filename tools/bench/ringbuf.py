"""Ring-buffer throughput: rawbpf's consumer against libbpf (C) and cilium/ebpf (Go) on one producer; kernel.

Runs the shared peer kit (../shared/peers/ringbuf/bench.py) with tools/rb_consumer.py as two more consumers:
``--mode raw`` (header walk + per-record decode to a tuple) and ``--mode decode-log`` (BTF decode, msgpack,
rotating log). Delivered events/s, median of the kit's interleaved runs.
"""

from __future__ import annotations

import fcntl
import json
import shlex
import sys
from typing import Any, Dict, List

from tools.bench.common import PEERS, ROOT, Context, Unavailable, run, scratch

KIT = PEERS / "ringbuf"
LOCK = "/tmp/rawbpf-peers-ringbuf.lock"  # the kit pins at a fixed path: one run at a time on this machine


def run_section(ctx: Context) -> Dict[str, Any]:
    if not (KIT / "bench.py").exists():
        raise Unavailable(f"peer kit not found at {KIT}")
    try:
        run(["make", "-s", "-C", str(KIT), "all", "go"], timeout=600)
    except RuntimeError as err:
        raise Unavailable(f"peer kit does not build: {err}") from err
    consumer = ROOT / "tools" / "rb_consumer.py"
    out: Dict[str, Any] = {}
    with scratch("ringbuf") as tmp:
        consumers = []
        if consumer.exists():
            py = shlex.quote(sys.executable)
            consumers = [f"rawbpf_raw={py} {shlex.quote(str(consumer))} --mode raw",
                         f"rawbpf_decode_log={py} {shlex.quote(str(consumer))} --mode decode-log "
                         f"--log-dir {shlex.quote(str(tmp / 'log'))}"]
        else:
            out["rawbpf_raw"] = out["rawbpf_decode_log"] = "error: tools/rb_consumer.py is not there yet"
        runs = "1" if ctx.quick else "3"
        table_path = tmp / "rb.json"
        def kit(extra: List[str]) -> str:
            with open(LOCK, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                return run([sys.executable, str(KIT / "bench.py"), "--runs", runs, "--out", str(table_path),
                            *extra], timeout=1200, cwd=ROOT)

        try:
            text = kit(consumers)
        except RuntimeError as err:
            if not consumers:
                raise
            # our consumer failed: keep the reason, still measure the peers
            out["rawbpf_raw"] = out["rawbpf_decode_log"] = f"error: {err}"
            text = kit([])
        table = json.loads(table_path.read_text())
    for name in ("rawbpf_raw", "rawbpf_decode_log", "libbpf-c", "go-cilium"):
        if name in table:
            out[name] = round(float(table[name]["median_delivered_per_s"]))
            out.setdefault("complete", {})[name] = bool(table[name]["all_complete"])
        else:
            out.setdefault(name, "error: consumer did not run")  # keeps an earlier, more precise reason
    for ours, peer in (("rawbpf_raw", "go-cilium"), ("rawbpf_raw", "libbpf-c"),
                       ("rawbpf_decode_log", "libbpf-c")):
        a, b = out.get(ours), out.get(peer)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            out[f"ratio_{ours}_vs_{peer}"] = round(a / b, 3)
    out["runs"] = int(runs)
    out["log"] = [ln for ln in text.splitlines() if "MEDIAN" in ln]
    return out
