/* subprogs.o: BPF-to-BPF calls. Static __noinline subprograms, a nested chain (chain_top → chain_mid →
 * leaf), a global (non-static) __noinline function verified on its own, and leaf shared by two programs.
 * Both programs are socket filters runnable with BPF_PROG_TEST_RUN; results also land in .bss.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

__u64 result_a;
__u64 result_b;

static __noinline __u64 leaf(__u64 x)
{
	return x * 3 + 1;
}

static __noinline __u64 chain_mid(__u64 x)
{
	return leaf(x) + leaf(x + 1);
}

static __noinline __u64 chain_top(__u64 x)
{
	return chain_mid(x) * 2;
}

__noinline int global_mix(int a, int b)
{
	return a * 10 + b;
}

/* prog_a(len) = chain_top(len) + global_mix(len, 7) = 12*len + 10 + 10*len + 7 */
SEC("socket")
int prog_a(struct __sk_buff *skb)
{
	__u64 len = skb->len;
	result_a = chain_top(len) + global_mix((int)len, 7);
	return (int)result_a;
}

/* prog_b(len) = leaf(len) + global_mix(2, 5) = 3*len + 1 + 25 */
SEC("socket")
int prog_b(struct __sk_buff *skb)
{
	__u64 len = skb->len;
	result_b = leaf(len) + global_mix(2, 5);
	return (int)result_b;
}

char LICENSE[] SEC("license") = "GPL";
