#!/usr/bin/env bash
# Rebuild programs/*.c from copies in two different temporary directories; fail if the two builds differ (the
# build depends on its path) or if a committed programs/*.o differs from them (stale: run make programs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in a/checkout "b/another place"; do
	mkdir -p "$tmp/$d"
	cp "$root"/programs/*.c "$root"/programs/*.h "$tmp/$d/"
	cp -r "$root/programs/include" "$tmp/$d/"
	"$root/tools/build_programs.sh" "$tmp/$d"
done
bad=0
for built in "$tmp"/a/checkout/*.o; do
	name=$(basename "$built")
	if ! cmp -s "$built" "$tmp/b/another place/$name"; then
		echo "programs/$name: the build depends on the source path" >&2
		bad=1
	elif ! cmp -s "$built" "$root/programs/$name"; then
		echo "programs/$name: stale or missing (run make programs and commit)" >&2
		bad=1
	fi
done
[ "$bad" = 0 ] && echo "programs: every committed object matches its source"
exit "$bad"
