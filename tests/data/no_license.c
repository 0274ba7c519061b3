/* no_license.o: no "license" section. Loaders load it with an empty license, as the kernel allows:
 * `unlicensed` (socket) calls nothing GPL-only and loads; `gpl_helper` (tracepoint) calls the GPL-only
 * helper bpf_probe_read_kernel, which the kernel refuses for a program that is not GPL-compatible.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("socket")
int unlicensed(struct __sk_buff *skb)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int gpl_helper(void *ctx)
{
	long v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), ctx);
	return v == 1;
}
