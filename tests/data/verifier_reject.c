/* verifier_reject.o: deref_unchecked dereferences a map lookup result without a NULL check; the verifier
 * rejects it ("invalid mem access 'map_value_or_null'") and line info points at the dereference below. A hash
 * map, because for an array and a constant in-range key, recent kernels know the lookup cannot fail.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

SEC("socket")
int deref_unchecked(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&counters, &key);

	return (int)*value; /* VERIFIER_REJECTS_HERE */
}

char LICENSE[] SEC("license") = "GPL";
