/* kinds.o: one of every BTF kind clang 14 emits, for the BTF parser's golden tests (bpftool btf dump raw). */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __ttag(x) __attribute__((btf_type_tag(x)))

struct fwd_only;
union fwd_union;

enum color { RED, GREEN = 5, BLUE = 0x7fffffff };
enum sign { NEG = -1, POS = 1 };

struct bits {
	unsigned int a : 3;
	unsigned int b : 13;
	int c : 7;
	unsigned long long d : 41;
	char tail;
} __tag("bits_struct");

struct nested {
	int first;
	union {
		struct {
			short x;
			short y;
		};
		int xy;
	};
	struct {
		char inner_a;
	} named;
	double ratio;
	float f;
	struct fwd_only *fwd;
	union fwd_union *fwdu;
	int __ttag("user") *tagged;
	const volatile int cv;
	int *restrict rp;
	int matrix[2][3];
	enum color c;
	enum sign s;
	struct bits bits;
	int (*cb)(int, char *);
	int flex[];
};

typedef struct nested nested_t;

struct nested g_nested __tag("global_var");
static volatile const int s_const = 3;
int g_counter = 7;
char g_bss_buf[32];

static __attribute__((noinline)) int helper(int a __tag("param"), nested_t *n)
{
	return a + n->first + s_const;
}

SEC("tp/syscalls/sys_enter_getpid")
int kinds_prog(void *ctx)
{
	g_counter += helper(g_counter, &g_nested) + g_bss_buf[1];
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
