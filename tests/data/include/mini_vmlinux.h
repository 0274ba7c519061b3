/* Tiny CO-RE kernel-type header for the rawbpf test corpus.
 *
 * UAPI definitions come from linux-libc-dev; the kernel-internal types below carry only the fields the corpus
 * reads, marked preserve_access_index so every access becomes a CO-RE relocation against the running kernel's
 * BTF. Field order and offsets here are deliberately not the kernel's: the loader must relocate them.
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__ /* also selects the kernel pt_regs register names in bpf_tracing.h */

#include <linux/types.h>
#include <linux/bpf.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef int pid_t;
typedef _Bool bool;
enum { false = 0, true = 1 };

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct task_struct {
	char comm[16];
	pid_t tgid;
	pid_t pid;
	u64 start_time;
	unsigned int in_execve : 1;
	unsigned int user_dumpable : 1;
	struct task_struct *real_parent;
};

struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	unsigned long orig_ax, ip, cs, flags, sp, ss;
};

struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

struct trace_event_raw_sched_process_exec {
	struct trace_entry ent;
	u32 __data_loc_filename;
	pid_t pid;
	pid_t old_pid;
};

struct trace_event_raw_sched_process_fork {
	struct trace_entry ent;
	pid_t parent_pid;
	pid_t child_pid;
};

struct trace_event_raw_sched_process_exit {
	struct trace_entry ent;
	pid_t pid;
};

struct linux_binprm;
struct bpf_map;
struct file;

#pragma clang attribute pop

enum pid_type {
	PIDTYPE_PID,
	PIDTYPE_TGID,
	PIDTYPE_PGID,
	PIDTYPE_SID,
	PIDTYPE_MAX,
};

/* syscalls/sys_{enter,exit}_* tracepoints have no kernel BTF type: fixed layouts from their format files. */
struct syscall_enter_connect_args {
	unsigned long long common;
	long syscall_nr;
	long fd;
	void *uservaddr;
	long addrlen;
};

struct syscall_exit_args {
	unsigned long long common;
	long syscall_nr;
	long ret;
};

#endif /* __VMLINUX_H__ */
