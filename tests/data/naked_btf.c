/* naked_btf.o: a __naked program; clang drops its parameter's name from BTF and the kernel refuses that
 * FUNC ("Invalid arg#1"). libbpf loads such objects without BTF (BTF is optional here); so must rawbpf.
 * `naked_ret` (socket) returns 42; `counted` (socket) increments .bss `runs`, so the object has global data.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

__u32 runs;

SEC("socket")
__attribute__((naked)) int naked_ret(struct __sk_buff *skb)
{
	asm volatile("r0 = 42; exit;" ::: "memory");
}

SEC("socket")
int counted(struct __sk_buff *skb)
{
	runs++;
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
