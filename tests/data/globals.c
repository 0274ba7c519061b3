/* globals.o: global data. const volatile .rodata (u32, u64, bool, char[16]) set before load, initialised
 * .data, zeroed .bss, custom .rodata.custom / .data.custom sections and a string literal (.rodata.str1.1).
 * copy_globals (socket, BPF_PROG_TEST_RUN) copies every rodata value into .bss so tests can observe it;
 * on_getppid (tracepoint) counts getppid() calls of the tgid written to .bss target_tgid.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>

const volatile __u32 cfg_u32 = 7;
const volatile __u64 cfg_u64 = 0x1122334455667788ULL;
const volatile bool cfg_bool = false;
const volatile char cfg_name[16] = "rawbpf";

const volatile __u32 custom_ro SEC(".rodata.custom") = 0xc0ffee;
__u32 custom_data SEC(".data.custom") = 100;

__u32 data_counter = 42;
__u64 data_u64 = 0xdeadbeefULL;

__u32 bss_u32;
__u64 bss_u64;
bool bss_bool;
char bss_name[16];
char bss_str[32];
__u32 target_tgid;
__u32 getppid_hits;

SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	__sync_fetch_and_add(&getppid_hits, 1);
	return 0;
}

SEC("socket")
int copy_globals(struct __sk_buff *skb)
{
	bss_u32 = cfg_u32;
	bss_u64 = cfg_u64;
	bss_bool = cfg_bool;
	for (int i = 0; i < 16; i++)
		bss_name[i] = cfg_name[i];
	data_counter += 1;
	custom_data += custom_ro;
	bpf_probe_read_kernel_str(bss_str, sizeof(bss_str), "from .rodata.str1.1");
	return cfg_u32;
}

char LICENSE[] SEC("license") = "GPL";
