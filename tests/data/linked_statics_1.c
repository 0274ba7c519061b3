/* linked_statics_1.c: half of linked_statics.o (bpftool gen object linked_statics_1.o linked_statics_2.o).
 * Both halves define a static function named `scale`; after linking they share .text and one name,
 * so a loader must find subprograms by section and offset. `entry_1` (socket) returns scale(skb->len).
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

static __noinline int scale(int x)
{
	return x * 10 + 1;
}

SEC("socket")
int entry_1(struct __sk_buff *skb)
{
	return scale(skb->len);
}
char LICENSE[] SEC("license") = "GPL";
