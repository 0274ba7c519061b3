/* layouts.o: record shapes for the BTF-driven decoder (never loaded): a single struct named after its ring,
 * a struct with a discriminated union, nested structs and arrays, enums, bitfields, bool, signed and
 * floating types, a char array sized by a `<name>_len` sibling, anonymous members, a flexible array, and
 * long numeric arrays.
 */
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

enum color { COLOR_RED = 0, COLOR_GREEN = 1, COLOR_BLUE = 7 };

struct point {
	__s32 x;
	__s32 y;
};

/* ring `samples` → struct sample (singular of the map name) */
struct sample {
	__u64 ts;
	__s8 s8;
	__u8 u8;
	__s16 s16;
	__u16 u16;
	__s32 s32;
	__s64 s64;
	bool flag;
	enum color color;
	char name[8];
	__u8 raw[4];
	struct point pts[2];
	__u16 grid[2][3];
	float f;
	double d;
	__u32 seq;
	__u32 type;
	__u32 lo : 4, mid : 9, hi : 19;
	__s32 neg : 5;
	__u32 path_len;
	char path[12];
	struct {
		__u32 inner_a;
		__u32 inner_b;
	};
	union {
		__u32 as_u32;
		__u8 as_bytes[4];
	} either;
};

enum msg_kind { MSG_OPEN = 1, MSG_CLOSE = 2 };

/* ring `msgs` → struct msgs: `kind` chooses the union member named like the enumerator */
struct msgs {
	enum msg_kind kind;
	__u32 pid;
	union {
		struct {
			char file[8];
			__u32 mode;
		} open;
		struct {
			__s32 fd;
			__s32 ret;
		} close;
	};
};

/* long arrays of numbers decode through one cast */
struct histo {
	__u32 buckets[64];
	__s64 sums[20];
	double avg[17];
	__u16 few[3];
};

struct blob {
	__u32 size;
	__u8 data[];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} msgs SEC(".maps");

struct sample *sample_type __attribute__((unused));
struct msgs *msgs_type __attribute__((unused));
struct blob *blob_type __attribute__((unused));
struct histo *histo_type __attribute__((unused));

SEC("socket")
int noop(struct __sk_buff *skb)
{
	return 0;
}
