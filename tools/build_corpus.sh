#!/bin/sh
# Build a corpus of real projects' BPF objects, outside the repository, for tools/compare_tags.py.
#
# usage: tools/build_corpus.sh SRC OUT
#
# SRC holds the sources (nothing is fetched here; obtain them once, e.g.):
#   SRC/linux-source-6.12   Debian's kernel source: `apt-get download linux-source-6.12`, then unpack
#                           usr/src/linux-source-6.12.tar.xz from the .deb (only tools/testing/selftests/bpf,
#                           tools/lib/bpf, tools/include, include/uapi/linux/bpf.h, scripts/bpf_doc.py are used).
#                           Its BPF selftests (tools/testing/selftests/bpf/progs/*.c) are the bulk of the corpus.
#   SRC/iovisor+bcc         `git archive` of github.com/iovisor/bcc, libbpf-tools/ (x86 only).
#   SRC/cilium+ebpf         `git archive` of github.com/cilium/ebpf: testdata/*.c are compiled, and the
#                           little-endian objects it commits (*-el.elf) are copied as they are.
# OUT receives include/ (vmlinux.h of this kernel via bpftool, libbpf's headers from the kernel source with a
# generated bpf_helper_defs.h) and one directory per build, <clang>-<mcpu>/<project>/<name>.o, plus
# <build>/failed.txt listing the sources that did not compile and <build>/sources.txt all that were tried.
# Builds: clang-14 at -mcpu=v3 (clang 14 has no v4), and the newest clang-NN installed at -mcpu=v3 and v4.
# Flags follow the projects' own: -g -O2 -target bpf, selftests with their include dirs and
# -DENABLE_ATOMICS_TESTS; no -Werror. Compiles run two at a time, niced.
set -eu

# one compile (run by xargs, two at a time): --one CC MCPU PROJECT OUTDIR EXTRA-FLAGS... SOURCE
if [ "${1:-}" = --one ]; then
    shift
    cc=$1 mcpu=$2 proj=$3 dir=$4
    shift 4
    eval "src=\${$#}"
    name=$(basename "$src" .c)
    name=${name%.bpf}
    mkdir -p "$dir/$proj"
    if nice "$cc" -g -O2 -target bpf "-mcpu=$mcpu" -D__TARGET_ARCH_x86 "$@" \
            -c -o "$dir/$proj/$name.o" 2> "$dir/$proj/$name.err"; then
        rm -f "$dir/$proj/$name.err"
    else
        echo "$proj/$name.c" >> "$dir/failed.txt"
        rm -f "$dir/$proj/$name.o"
    fi
    exit 0
fi

SRC=$(realpath "$1")
OUT=$(realpath -m "$2")
LINUX=$SRC/linux-source-6.12
SELF=$LINUX/tools/testing/selftests/bpf
BCC=$SRC/iovisor+bcc/libbpf-tools
CIL=$SRC/cilium+ebpf
NEWEST=$(ls /usr/bin/clang-[0-9]* | grep -E 'clang-[0-9]+$' | sort -V | tail -1 | xargs basename)
SELF_SCRIPT=$(realpath "$0")

mkdir -p "$OUT/include/bpf"
bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$OUT/include/vmlinux.h"
cp "$LINUX"/tools/lib/bpf/*.h "$OUT/include/bpf/"
python3 "$LINUX/scripts/bpf_doc.py" --header --file "$LINUX/include/uapi/linux/bpf.h" \
    > "$OUT/include/bpf/bpf_helper_defs.h"

# compile every source of one project: CC MCPU PROJECT DIR FLAGS... < list of sources
project() {
    cc=$1 mcpu=$2 proj=$3 dir=$4
    shift 4
    tee -a "$dir/sources.txt.$proj" | xargs -P2 -n1 "$SELF_SCRIPT" --one "$cc" "$mcpu" "$proj" "$dir" "$@"
    sed "s|.*/||; s|^|$proj/|" "$dir/sources.txt.$proj" >> "$dir/sources.txt"
    rm "$dir/sources.txt.$proj"
}

build() {
    cc=$1 mcpu=$2
    dir=$OUT/$cc-$mcpu
    rm -rf "$dir"
    mkdir -p "$dir"
    : > "$dir/failed.txt"
    : > "$dir/sources.txt"
    # the compiler's own system include dirs, after ours (as the selftests' Makefile does)
    sys=$("$cc" -v -E - </dev/null 2>&1 \
          | sed -n '/<...> search starts here:/,/End of search list./{ s| \(/.*\)|-idirafter \1|p }' | tr '\n' ' ')
    # shellcheck disable=SC2086
    ls "$SELF"/progs/*.c | project "$cc" "$mcpu" selftests "$dir" -std=gnu11 -fno-strict-aliasing \
        -Wno-compare-distinct-pointer-types -DENABLE_ATOMICS_TESTS \
        -I"$OUT/include" -I"$SELF" -I"$LINUX/tools/include/uapi" $sys
    # shellcheck disable=SC2086
    ls "$BCC"/*.bpf.c | project "$cc" "$mcpu" bcc "$dir" -I"$OUT/include" -I"$BCC" $sys
    # shellcheck disable=SC2086
    ls "$CIL"/testdata/*.c | project "$cc" "$mcpu" cilium-ebpf "$dir" -I"$CIL/testdata" $sys
    echo "$cc -mcpu=$mcpu: $(wc -l < "$dir/sources.txt") sources, $(wc -l < "$dir/failed.txt") did not compile"
}

build clang-14 v3
build "$NEWEST" v3
build "$NEWEST" v4

# cilium/ebpf's committed objects, built by that project with its own compilers
dir=$OUT/cilium-committed
rm -rf "$dir"
mkdir -p "$dir/cilium-ebpf"
find "$CIL" -name '*-el.elf' | while read -r f; do
    cp "$f" "$dir/cilium-ebpf/$(echo "${f#"$CIL"/}" | tr / _ | sed 's/-el\.elf$/.o/')"
done
ls "$dir/cilium-ebpf" | sed 's/^/cilium-ebpf\//' > "$dir/sources.txt"
: > "$dir/failed.txt"
echo "cilium/ebpf committed: $(wc -l < "$dir/sources.txt") objects"
