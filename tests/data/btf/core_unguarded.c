/* core_unguarded.o: reads a field no kernel has without a bpf_core_field_exists guard, so the poisoned
 * instruction is reachable and the verifier refuses the program ("invalid func unknown#195896080").
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___nope {
	int rawbpf_absent;
} __attribute__((preserve_access_index));

int out;

SEC("tp/syscalls/sys_enter_getppid")
int unguarded(void *ctx)
{
	struct task_struct___nope *t = (void *)bpf_get_current_task();

	out = BPF_CORE_READ(t, rawbpf_absent);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
