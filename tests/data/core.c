/* core.o: CO-RE against the running kernel. On getppid() of the tgid written to .bss target_tgid, on_getppid
 * stores in .bss `result`: task pid, tgid, comm, real_parent->tgid and start_time read through relocated
 * offsets; field exists / size / offset / signedness; a bitfield (in_execve); type exists / size / kernel type id; enum value exists /
 * value (enum pid_type); a read through a ___flavor local type; and a relocation that cannot resolve on any
 * kernel (task_struct___missing.rawbpf_no_such_field) guarded by bpf_core_field_exists, so the loader must
 * poison it rather than fail.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___flavor {
	pid_t tgid;
	struct task_struct___flavor *real_parent;
} __attribute__((preserve_access_index));

struct task_struct___missing {
	int rawbpf_no_such_field;
} __attribute__((preserve_access_index));

struct rawbpf_no_such_type {
	int x;
};

struct core_result {
	__u32 ran;
	__u32 pid;
	__u32 tgid;
	__u32 parent_tgid;
	__u64 start_time;
	char comm[16];
	__u32 pid_exists;
	__u32 missing_exists;
	__u32 missing_value;
	__u32 pid_size;
	__u32 comm_size;
	__u32 pid_signed;
	__u32 pid_offset;
	__u32 in_execve;
	__u32 task_exists;
	__u32 no_type_exists;
	__u32 task_size;
	__u32 task_type_id;
	__u32 sid_exists;
	__u32 sid_value;
	__u32 flavor_tgid;
	__u32 flavor_parent_tgid;
};

__u32 target_tgid;
struct core_result result;

SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;

	struct task_struct *task = (void *)bpf_get_current_task();
	struct task_struct___flavor *flav = (void *)task;
	struct task_struct___missing *missing = (void *)task;

	result.pid = BPF_CORE_READ(task, pid);
	result.tgid = BPF_CORE_READ(task, tgid);
	result.parent_tgid = BPF_CORE_READ(task, real_parent, tgid);
	result.start_time = BPF_CORE_READ(task, start_time);
	BPF_CORE_READ_INTO(&result.comm, task, comm);

	result.pid_exists = bpf_core_field_exists(task->pid);
	result.missing_exists = bpf_core_field_exists(missing->rawbpf_no_such_field);
	if (bpf_core_field_exists(missing->rawbpf_no_such_field))
		result.missing_value = BPF_CORE_READ(missing, rawbpf_no_such_field);
	result.pid_size = bpf_core_field_size(task->pid);
	result.comm_size = bpf_core_field_size(task->comm);
	result.pid_signed = __builtin_preserve_field_info(task->pid, BPF_FIELD_SIGNED);
	result.pid_offset = bpf_core_field_offset(task->pid);
	result.in_execve = BPF_CORE_READ_BITFIELD_PROBED(task, in_execve);

	result.task_exists = bpf_core_type_exists(struct task_struct);
	result.no_type_exists = bpf_core_type_exists(struct rawbpf_no_such_type);
	result.task_size = bpf_core_type_size(struct task_struct);
	result.task_type_id = bpf_core_type_id_kernel(struct task_struct);
	result.sid_exists = bpf_core_enum_value_exists(enum pid_type, PIDTYPE_SID);
	result.sid_value = bpf_core_enum_value(enum pid_type, PIDTYPE_SID);

	result.flavor_tgid = BPF_CORE_READ(flav, tgid);
	result.flavor_parent_tgid = BPF_CORE_READ(flav, real_parent, tgid);
	result.ran = 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
