#!/usr/bin/env bash
# Build the BPF test corpus in DIR (default tests/data) from its .c sources, byte-reproducibly: compile from
# inside DIR with relative paths and map DIR to "." in debug info, so the objects do not depend on where the
# checkout lives. Needs Debian's clang 14, libbpf-dev headers, gcc and python3 with pyelftools.
set -euo pipefail
dir=${1:-tests/data}
tools=$(cd "$(dirname "$0")" && pwd)
clang=${CLANG:-clang}
python=${PYTHON:-python3}
multiarch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
cd "$dir"
here=$(pwd)
cflags=(-O2 -g -target bpf -Wall -Werror -D__TARGET_ARCH_x86 -Iinclude -idirafter "/usr/include/$multiarch"
        "-fdebug-prefix-map=$here=." "-ffile-prefix-map=$here=." -fno-ident)
bpf_objs=(globals maps_btf maps_legacy subprogs callbacks core tracepoints5 attach_kinds sections_misc
          no_license verifier_reject kconfig_virtual kconfig_unknown ksym_exists naked_btf struct_ops_prog
          struct_ops_tcp struct_ops_link)
for name in "${bpf_objs[@]}"; do
	"$clang" "${cflags[@]}" -c "$name.c" -o "$name.o"
done
# linked_statics.o: two objects linked by bpftool, each with a static function of the same name
tmp=$(mktemp -d)
for half in 1 2; do
	"$clang" "${cflags[@]}" -c "linked_statics_$half.c" -o "$tmp/linked_statics_$half.o"
done
bpftool gen object linked_statics.o "$tmp/linked_statics_1.o" "$tmp/linked_statics_2.o"
rm -rf "$tmp"
gcc -O2 -g0 -fno-ident -fno-asynchronous-unwind-tables "-ffile-prefix-map=$here=." -c wrong_machine.c \
	-o wrong_machine.o
size=$(stat -c %s globals.o)
head -c $((size / 2)) globals.o > truncated.o
"$python" "$tools/corrupt_btf.py" subprogs.o bad_btf.o
printf 'this is not an ELF object, just text for error tests\n' > not_elf.bin
