/* struct_ops_prog.o: a program in a `struct_ops/` section. rawbpf does not load struct_ops yet and must say
 * so by name, rather than pass the kernel's bare ENOTSUPP on.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("struct_ops/rb_ssthresh")
__u32 rb_ssthresh(void *ctx)
{
	return 10;
}

char LICENSE[] SEC("license") = "GPL";
