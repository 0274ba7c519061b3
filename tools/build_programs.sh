#!/usr/bin/env bash
# Build programs/*.c into programs/*.o (or into OUT_DIR), byte-reproducibly: compile from inside the source
# directory with relative paths and map that directory to "." in debug info, so the object does not depend on
# where the checkout lives. Needs Debian's clang 14 and the libbpf-dev headers.
set -euo pipefail
src=${1:-programs}
out=${2:-$src}
clang=${CLANG:-clang}
multiarch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
out=$(mkdir -p "$out" && cd "$out" && pwd)
cd "$src"
here=$(pwd)
cflags=(-O2 -g -target bpf -Wall -Werror -D__TARGET_ARCH_x86 -Iinclude -idirafter "/usr/include/$multiarch"
        "-fdebug-prefix-map=$here=." "-ffile-prefix-map=$here=." -fno-ident)
for c in *.c; do
	"$clang" "${cflags[@]}" -c "$c" -o "$out/${c%.c}.o"
done
