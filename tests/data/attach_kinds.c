/* attach_kinds.o: one program per attach-point spelling: tp/, tracepoint/, raw_tp/, raw_tracepoint/, tp_btf/,
 * uprobe/ and uretprobe/ in binary:symbol form, a bare SEC("uprobe") for manual attachment, and two programs
 * in one section. Each counts hits of the tgid written to .bss target_tgid into .bss `hits`, indexed as below.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

enum { HIT_TP, HIT_TP_SECOND, HIT_TRACEPOINT, HIT_RAW_TP, HIT_RAW_TRACEPOINT, HIT_TP_BTF, HIT_UPROBE,
       HIT_URETPROBE, HIT_UPROBE_MANUAL, HIT_MAX };

__u32 target_tgid;
__u64 hits[HIT_MAX];
__s64 uretprobe_ret;

static __always_inline int hit(int which)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) == target_tgid)
		__sync_fetch_and_add(&hits[which], 1);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int tp_getppid(void *ctx)
{
	return hit(HIT_TP);
}

SEC("tp/syscalls/sys_enter_getppid")
int tp_getppid_second(void *ctx)
{
	return hit(HIT_TP_SECOND);
}

SEC("tracepoint/syscalls/sys_exit_getppid")
int tracepoint_getppid(void *ctx)
{
	return hit(HIT_TRACEPOINT);
}

SEC("raw_tp/sys_enter")
int raw_tp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] != 110) /* __NR_getppid on x86_64 */
		return 0;
	return hit(HIT_RAW_TP);
}

SEC("raw_tracepoint/sys_exit")
int raw_tracepoint_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (void *)ctx->args[0];

	if (BPF_CORE_READ(regs, orig_ax) != 110)
		return 0;
	return hit(HIT_RAW_TRACEPOINT);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tp_btf_fork, struct task_struct *parent, struct task_struct *child)
{
	return hit(HIT_TP_BTF);
}

SEC("uprobe//lib/x86_64-linux-gnu/libc.so.6:getppid")
int BPF_KPROBE(uprobe_getppid)
{
	return hit(HIT_UPROBE);
}

SEC("uretprobe//lib/x86_64-linux-gnu/libc.so.6:getppid")
int BPF_KRETPROBE(uretprobe_getppid, long ret)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) == target_tgid)
		uretprobe_ret = ret;
	return hit(HIT_URETPROBE);
}

SEC("uprobe")
int BPF_KPROBE(uprobe_manual)
{
	return hit(HIT_UPROBE_MANUAL);
}

char LICENSE[] SEC("license") = "GPL";
