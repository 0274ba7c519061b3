/* maps_btf.o: BTF-defined .maps with every field: hash (pinned by name), array (key_size/value_size form),
 * percpu_array, lru_hash (numa_node), lpm_trie (BPF_F_NO_PREALLOC), ringbuf (size not a power of two: the
 * loader rounds it), perf_event_array (no max_entries: one per CPU), prog_array initialised with .values,
 * array_of_maps initialised with .values, hash_of_maps with an inline inner definition, bloom_filter
 * (map_extra = hash count), queue. use_maps (socket) touches them all; tail_entry (socket) tail-calls slot 1.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

struct val {
	__u64 count;
	__u32 flags;
	__u32 pad;
};

struct lpm_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, struct val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u64));
} sized_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NUMA_NODE);
	__uint(numa_node, 0);
	__type(key, __u64);
	__type(value, __u32);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u32);
} lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 5000);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer_array SEC(".maps") = {
	.values = { &inner_b, &inner_a },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 8);
		__type(key, __u32);
		__type(value, __u32);
	});
} outer_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 64);
	__uint(map_extra, 3);
	__type(value, __u32);
} bloom SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16);
	__type(value, __u64);
} queue SEC(".maps");

SEC("socket")
int tail_one(struct __sk_buff *skb)
{
	return 11;
}

SEC("socket")
int tail_three(struct __sk_buff *skb)
{
	return 33;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int(void *));
} jump_table SEC(".maps") = {
	.values = { [1] = (void *)&tail_one, [3] = (void *)&tail_three },
};

SEC("socket")
int tail_entry(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &jump_table, 1);
	return 0;
}

SEC("socket")
int use_maps(struct __sk_buff *skb)
{
	__u32 key = 0, one = 1;
	__u64 len = skb->len;
	struct val *v = bpf_map_lookup_elem(&pinned_hash, &key);
	if (v)
		v->count += 1;
	bpf_map_update_elem(&sized_array, &key, &len, BPF_ANY);
	__u64 *pc = bpf_map_lookup_elem(&percpu, &key);
	if (pc)
		*pc += 1;
	bpf_map_update_elem(&lru, &len, &one, BPF_ANY);
	struct lpm_key lk = { .prefixlen = 32, .addr = { 10, 0, 0, 1 } };
	__u32 *route = bpf_map_lookup_elem(&lpm, &lk);
	void *inner = bpf_map_lookup_elem(&outer_array, &key);
	if (inner) {
		__u64 *slot = bpf_map_lookup_elem(inner, &key);
		if (slot)
			*slot = len;
	}
	inner = bpf_map_lookup_elem(&outer_hash, &key);
	if (inner)
		bpf_map_update_elem(inner, &key, &one, BPF_ANY);
	bpf_map_push_elem(&queue, &len, BPF_EXIST);
	if (bpf_map_peek_elem(&bloom, &one) == 0)
		len += 1000;
	bpf_ringbuf_output(&events, &len, sizeof(len), 0);
	return route ? *route : (int)len;
}

SEC("tp/syscalls/sys_enter_getppid")
int perf_out(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &pid_tgid, sizeof(pid_tgid));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
