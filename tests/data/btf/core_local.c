/* core_local.o: CO-RE relocations of every kind clang 14 emits, against local types that differ from
 * core_target.c (unit tests relocate one against the other; a kernel test compares with libbpf's decisions).
 * Section "socket" resolves cleanly (poisoning what the target lacks); "socket/ambiguous" must fail.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

enum state_kind { ST_RUNNING = 1, ST_SLEEPING = 2, ST_GONE = 9 };

struct inner {
	int a;
	int b;
} __attribute__((preserve_access_index));

struct task {
	int pid;
	int tgid;
	char comm[16];
	struct task *parent;
	unsigned int in_exec : 1;
	int sfield : 5;
	unsigned int short_field;
	long signed_narrow;
	int arr[4][2];
	struct inner inner_arr[3];
	enum state_kind kind;
	int missing_field;
	int flex[];
} __attribute__((preserve_access_index));

struct task___v2 {
	int pid;
	char comm[16];
} __attribute__((preserve_access_index));

struct dup {
	int y;
} __attribute__((preserve_access_index));

struct amb {
	int x;
} __attribute__((preserve_access_index));

union u {
	int i;
	char c;
} __attribute__((preserve_access_index));

struct no_such_type {
	int z;
};

typedef int my_int;

struct m_ok {
	int a;
	struct task *p;
};

struct m_bad {
	int a;
	struct task *p;
};

struct out {
	__u64 v[40];
};

struct out out;

SEC("socket")
int local_prog(void *ctx)
{
	struct task *t = (void *)(long)bpf_get_prandom_u32();
	struct task___v2 *t2 = (void *)t;
	struct dup *d = (void *)t;
	union u *u = (void *)t;

	out.v[0] = BPF_CORE_READ(t, pid);
	out.v[1] = BPF_CORE_READ(t, parent, tgid);
	out.v[2] = bpf_core_field_exists(t->missing_field);
	if (bpf_core_field_exists(t->missing_field))
		out.v[3] = BPF_CORE_READ(t, missing_field);
	out.v[4] = bpf_core_field_size(t->comm);
	out.v[5] = bpf_core_field_offset(t->arr[2][1]);
	out.v[6] = bpf_core_field_offset(t->inner_arr[2].a);
	out.v[7] = BPF_CORE_READ_BITFIELD_PROBED(t, in_exec);
	out.v[8] = BPF_CORE_READ_BITFIELD_PROBED(t, sfield);
	out.v[9] = __builtin_preserve_field_info(t->sfield, BPF_FIELD_SIGNED);
	out.v[10] = __builtin_preserve_field_info(t->kind, BPF_FIELD_SIGNED);
	out.v[11] = t->short_field;
	out.v[12] = t->signed_narrow;
	t->pid = 5;
	out.v[13] = bpf_core_type_exists(struct task);
	out.v[14] = bpf_core_type_exists(struct no_such_type);
	out.v[15] = bpf_core_type_size(struct task);
	out.v[16] = bpf_core_type_size(my_int);
	out.v[17] = bpf_core_type_id_local(struct task);
	out.v[18] = bpf_core_type_id_kernel(struct task);
	out.v[19] = bpf_core_enum_value_exists(enum state_kind, ST_SLEEPING);
	out.v[20] = bpf_core_enum_value_exists(enum state_kind, ST_GONE);
	out.v[21] = bpf_core_enum_value(enum state_kind, ST_SLEEPING);
	if (bpf_core_enum_value_exists(enum state_kind, ST_GONE))
		out.v[22] = bpf_core_enum_value(enum state_kind, ST_GONE);
	out.v[23] = BPF_CORE_READ(t2, comm[3]);
	out.v[24] = BPF_CORE_READ(d, y);
	out.v[25] = BPF_CORE_READ(u, c);
	out.v[26] = bpf_core_field_offset(t->flex[3]);
	out.v[27] = bpf_core_type_exists(struct m_ok) + bpf_core_type_exists(struct m_bad);
	return 0;
}

SEC("socket/ambiguous")
int ambiguous_prog(void *ctx)
{
	struct amb *a = (void *)(long)bpf_get_prandom_u32();

	out.v[30] = BPF_CORE_READ(a, x);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
