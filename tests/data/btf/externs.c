/* externs.o: ksym variables and kfuncs, kconfig values; their DATASECs must be rewritten before BTF_LOAD. */
#include <linux/types.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

struct task_struct {
	int pid;
} __attribute__((preserve_access_index));

extern const void init_task __ksym __weak;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;
extern int LINUX_KERNEL_VERSION __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig __weak;

int out;

SEC("tp_btf/task_newtask")
int externs_prog(__u64 *ctx)
{
	struct task_struct *t = (void *)ctx[0];

	out = LINUX_KERNEL_VERSION + CONFIG_BPF_SYSCALL + (int)(long)&init_task;
	if (bpf_task_acquire) {
		t = bpf_task_acquire(t);
		if (t)
			bpf_task_release(t);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
