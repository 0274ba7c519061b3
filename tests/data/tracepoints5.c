/* tracepoints5.o: five tracepoint programs with CO-RE (sched_process_exec/fork/exit, sys_enter_connect,
 * sys_exit_connect) that each send a small event to a ring buffer: the shape of a real monitor, for the
 * load-time benchmark and auto-attach tests.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct event {
	__u32 kind;
	__u32 pid;
	__u32 ppid;
	__s32 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} tp5_events SEC(".maps");

static __always_inline void emit(__u32 kind, __s32 value)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct event *e = bpf_ringbuf_reserve(&tp5_events, sizeof(*e), 0);

	if (!e)
		return;
	e->kind = kind;
	e->pid = BPF_CORE_READ(task, tgid);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->value = value;
	bpf_ringbuf_submit(e, 0);
}

SEC("tp/sched/sched_process_exec")
int tp5_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	emit(1, BPF_CORE_READ(ctx, old_pid));
	return 0;
}

SEC("tp/sched/sched_process_fork")
int tp5_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	emit(2, BPF_CORE_READ(ctx, child_pid));
	return 0;
}

/* sched_process_exit's record on kernels where it has no type of its own (6.1 among them) */
struct trace_event_raw_sched_process_template {
	struct trace_entry ent;
	pid_t pid;
} __attribute__((preserve_access_index));

SEC("tp/sched/sched_process_exit")
int tp5_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	/* newer kernels give sched_process_exit a type of its own (with group_dead); older ones, 6.1 among them,
	 * share sched_process_template, a name newer kernels keep for a different layout: CO-RE picks the one
	 * this kernel has */
	if (bpf_core_type_exists(struct trace_event_raw_sched_process_exit))
		emit(3, BPF_CORE_READ(ctx, pid));
	else
		emit(3, BPF_CORE_READ((struct trace_event_raw_sched_process_template *)ctx, pid));
	return 0;
}

SEC("tp/syscalls/sys_enter_connect")
int tp5_connect_enter(struct syscall_enter_connect_args *ctx)
{
	emit(4, (__s32)ctx->fd);
	return 0;
}

SEC("tp/syscalls/sys_exit_connect")
int tp5_connect_exit(struct syscall_exit_args *ctx)
{
	emit(5, (__s32)ctx->ret);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
