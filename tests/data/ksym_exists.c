/* ksym_exists.o: bpf_ksym_exists() on a kfunc the kernel has and on one it lacks (both weak __ksym).
 * An ld_imm64 against a present kfunc must become a BTF-id load so the verifier keeps the guarded call;
 * `probe_kfuncs` (syscall, test_run) sets .bss `present` = 1, `missing` = 0 and returns the caller's tgid
 * through bpf_task_from_pid, or 0 when the guard was wrongly false.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* bpf_ksym_exists() as later libbpf headers define it (Debian's libbpf 1.1 has none) */
#define ksym_exists(sym) ({ \
	_Static_assert(!__builtin_constant_p(!!sym), #sym " should be marked as __weak"); \
	!!sym; \
})

extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;
extern void bpf_rawbpf_no_such_kfunc(void) __ksym __weak;

__u32 present;
__u32 missing;

SEC("syscall")
int probe_kfuncs(void *ctx)
{
	struct task_struct *t;
	int tgid = 0;

	present = ksym_exists(bpf_task_from_pid);
	missing = ksym_exists(bpf_rawbpf_no_such_kfunc);
	if (!ksym_exists(bpf_task_from_pid))
		return 0;
	t = bpf_task_from_pid(bpf_get_current_pid_tgid() >> 32);
	if (t) {
		tgid = BPF_CORE_READ(t, tgid);
		bpf_task_release(t);
	}
	return tgid;
}

char LICENSE[] SEC("license") = "GPL";
