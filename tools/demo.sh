#!/usr/bin/env bash
# make demo: start the Claude monitor, run the scripted Claude-like workload, show what was recorded with
# rawbpf status and rawbpf tail, then stop the monitor (which detaches and unpins everything). Needs root.
set -euo pipefail
py=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/rawbpf-demo.XXXXXX)
logs="$work/logs"
pins="/sys/fs/bpf/rawbpf-demo-$$"
cd "$root"
"$py" -m rawbpf load programs/claude_monitor.o --log-dir "$logs" --pin-dir "$pins" > "$work/monitor.out" 2>&1 &
monitor=$!
stop() { kill -INT "$monitor" 2>/dev/null && wait "$monitor" || true; }
trap stop EXIT
for _ in $(seq 100); do
	grep -q '^logging to ' "$work/monitor.out" && break
	kill -0 "$monitor" 2>/dev/null || { cat "$work/monitor.out" >&2; exit 1; }
	sleep 0.1
done
sed 's/^/  monitor: /' "$work/monitor.out"
echo "== running the scripted workload (a 'claude' that connects, forks, renames, exits 3)"
"$py" tests/workload/driver.py --dir "$work/workload" > "$work/manifest.json"
sleep 1.5
echo "== rawbpf status"
"$py" -m rawbpf status --log-dir "$logs"
echo "== rawbpf tail (the workload's records)"
if "$py" -m rawbpf tail --help 2>/dev/null | grep -q -- '--log-dir'; then
	"$py" -m rawbpf tail --log-dir "$logs" -n 60
else
	"$py" - "$logs" <<'PY'
import json, sys
from rawbpf.logfile import LogReader
with LogReader(sys.argv[1]) as r:
    for rec in list(r.records())[-60:]:
        print(json.dumps(rec, default=str))
PY
fi
stop
trap - EXIT
echo "== stopped; the log stays in $logs"
