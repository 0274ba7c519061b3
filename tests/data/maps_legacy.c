/* maps_legacy.o: legacy SEC("maps") struct bpf_map_def maps (libbpf < 1.0 style; libbpf 1.x refuses them)
 * used by a socket program runnable with BPF_PROG_TEST_RUN.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") legacy_hash = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 32,
};

struct bpf_map_def SEC("maps") legacy_array = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 4,
	.map_flags = 0,
};

SEC("socket")
int use_legacy(struct __sk_buff *skb)
{
	__u32 key = 1;
	__u64 len = skb->len;
	bpf_map_update_elem(&legacy_hash, &key, &len, BPF_ANY);
	__u32 *v = bpf_map_lookup_elem(&legacy_array, &key);
	if (!v)
		return 0;
	*v += 1;
	return *v;
}

char LICENSE[] SEC("license") = "GPL";
