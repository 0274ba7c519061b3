/* callbacks.o: callbacks passed as PSEUDO_FUNC pointers: bpf_loop and bpf_for_each_map_elem.
 * run_loop returns 0+1+…+9 = 45; run_for_each returns the sum of the values in `values` (set by tests).
 * Both are socket filters runnable with BPF_PROG_TEST_RUN; results also land in .bss.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

struct sum_ctx {
	__u64 sum;
	__u32 visited;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

__u64 loop_sum;
__u64 each_sum;
__u32 each_visited;

static int loop_cb(__u32 index, void *data)
{
	struct sum_ctx *c = data;

	c->sum += index;
	c->visited++;
	return 0;
}

static __u64 each_cb(struct bpf_map *map, __u32 *key, __u64 *val, struct sum_ctx *c)
{
	c->sum += *val;
	c->visited++;
	return 0;
}

SEC("socket")
int run_loop(struct __sk_buff *skb)
{
	struct sum_ctx c = {};

	bpf_loop(10, loop_cb, &c, 0);
	loop_sum = c.sum;
	return (int)c.sum;
}

SEC("socket")
int run_for_each(struct __sk_buff *skb)
{
	struct sum_ctx c = {};

	bpf_for_each_map_elem(&values, each_cb, &c, 0);
	each_sum = c.sum;
	each_visited = c.visited;
	return (int)c.sum;
}

char LICENSE[] SEC("license") = "GPL";
