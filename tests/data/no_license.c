/* no_license.o: a valid socket program with no "license" section; loaders must refuse it by name, not let
 * the kernel reject GPL-only helpers later.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("socket")
int unlicensed(struct __sk_buff *skb)
{
	return 0;
}
