/* kconfig_unknown.o: a weak __kconfig extern in the LINUX_ namespace no loader knows. libbpf reads such a
 * value as 0, as it does a weak CONFIG_ value the kernel config lacks; only a strong one is refused.
 * `read_unknown` (socket, test_run) returns the value plus 7.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

extern int LINUX_RAWBPF_NOT_A_VIRTUAL_VALUE __kconfig __weak;

SEC("socket")
int read_unknown(struct __sk_buff *skb)
{
	return LINUX_RAWBPF_NOT_A_VIRTUAL_VALUE + 7;
}

char LICENSE[] SEC("license") = "GPL";
