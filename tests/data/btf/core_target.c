/* core_target.o: a small stand-in "kernel" whose .BTF is the CO-RE target of core_local.o in unit tests.
 * Layouts differ from core_local.c on purpose: moved and resized fields, anonymous nesting, flavored
 * duplicates (same and different offsets), enums with other values, a narrower signed field.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

enum state_kind { ST_SLEEPING = 20, ST_RUNNING = 10 };
enum big_kind { BIG_ONE = 1, BIG_HUGE = 0x7fffffff };

struct inner {
	int b;
	int pad;
	int a;
};

struct task {
	long long state;
	char comm[32];
	union {
		struct {
			int tgid;
			int pid;
		};
		long long both;
	};
	unsigned short short_field;
	int signed_narrow;
	struct task *parent;
	unsigned int pad_bits : 7, in_exec : 1;
	int sfield : 5;
	int arr[4][2];
	struct inner inner_arr[3];
	enum state_kind kind;
	int flex[];
};

struct dup___a {
	int pad;
	int y;
};

struct dup___b {
	int other;
	int y;
};

struct amb___a {
	int x;
};

struct amb___b {
	int pad;
	int x;
};

union u {
	char c;
	int i;
};

typedef long my_int;

struct m_ok {
	struct task *p;
	int a;
	int extra;
};

struct m_bad {
	int a;
	long p;
};

struct task t0;
struct dup___a d0;
struct dup___b d1;
struct amb___a a0;
struct amb___b a1;
union u u0;
my_int i0;
struct m_ok mo;
struct m_bad mb;
enum state_kind k0;
enum big_kind k1;

SEC("socket")
int target_anchor(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
