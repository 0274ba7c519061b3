/* kconfig_virtual.o: the __kconfig externs a loader fills itself (libbpf's LINUX_* set), strong and weak.
 * `read_virtual` (socket, test_run) copies them into .bss and returns LINUX_HAS_SYSCALL_WRAPPER.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

extern _Bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern _Bool LINUX_HAS_BPF_COOKIE __kconfig __weak;
extern unsigned int LINUX_KERNEL_VERSION __kconfig __weak;

__u32 has_wrapper;
__u32 has_cookie;
__u32 kernel_version;

SEC("socket")
int read_virtual(struct __sk_buff *skb)
{
	has_wrapper = LINUX_HAS_SYSCALL_WRAPPER;
	has_cookie = LINUX_HAS_BPF_COOKIE;
	kernel_version = LINUX_KERNEL_VERSION;
	return LINUX_HAS_SYSCALL_WRAPPER;
}

char LICENSE[] SEC("license") = "GPL";
