#!/usr/bin/env bash
# Rebuild the test corpus from a copy of its sources in a temporary directory and fail if any committed
# object in tests/data differs byte for byte (a stale object, or a build that depends on the checkout path).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tests/data" "$tmp/tools"
cp "$root"/tests/data/*.c "$tmp/tests/data/"
cp -r "$root/tests/data/include" "$tmp/tests/data/"
cp "$root/tools/build_testdata.sh" "$root/tools/corrupt_btf.py" "$tmp/tools/"
(cd "$tmp" && tools/build_testdata.sh tests/data)
stale=0
for built in "$tmp"/tests/data/*.o "$tmp/tests/data/not_elf.bin"; do
	name=$(basename "$built")
	if ! cmp -s "$built" "$root/tests/data/$name"; then
		echo "stale or missing: tests/data/$name (run make testdata and commit)" >&2
		stale=1
	fi
done
for committed in "$root"/tests/data/*.o; do
	[ -e "$tmp/tests/data/$(basename "$committed")" ] || { echo "not built by make testdata: $committed" >&2; stale=1; }
done
[ "$stale" = 0 ] && echo "tests/data: every object matches its sources"
exit "$stale"
