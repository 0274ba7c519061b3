/* Disassembler corpus: as much of the eBPF ISA as Debian's clang 14 can emit (-mcpu=v3).
 * Built by `make testdata-asm`; tests/data/golden/isa*.txt hold llvm-objdump's text for it.
 * Never loaded into a kernel: it only has to assemble. Inline asm pins exact encodings, C code adds what
 * the compiler generates by itself (map and global references, subprogram calls, callbacks, labels). */
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef long long s64;
typedef int s32;

#define SEC(name) __attribute__((section(name), used))
#define CLOBBER "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "memory"

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_loop)(u32 n, void *fn, void *ctx, u64 flags) = (void *)181;

struct {
	int (*type)[1];
	int (*max_entries)[16];
	u32 *key;
	u64 *value;
} isa_counts SEC(".maps");

u64 isa_g64 = 5;
u32 isa_g32;
const volatile u64 isa_ro = 7;

SEC("tp/isa/alu64") int alu64(void *ctx)
{
	asm volatile(
		"r0 = 0; r1 = 1; r2 = -1; r3 = 2147483647; r4 = -2147483648; r5 = r1;"
		"r0 += 1; r0 += -8; r0 += r1; r0 -= 3; r0 -= r2; r0 *= 7; r0 *= r3;"
		"r0 /= 9; r0 /= r4; r0 |= 0xff; r0 |= r1; r0 &= 0xffff; r0 &= r2;"
		"r0 <<= 1; r0 <<= 63; r0 <<= r3; r0 >>= 2; r0 >>= r4; r0 s>>= 3; r0 s>>= r5;"
		"r0 ^= 0x55; r0 ^= r1; r0 = -r0; r9 = r10; r6 = r0;"
		::: CLOBBER);
	return 0;
}

SEC("tp/isa/alu32") int alu32(void *ctx)
{
	asm volatile(
		"w0 = 0; w1 = 1; w2 = -1; w3 = 2147483647; w4 = -2147483648; w5 = w1;"
		"w0 += 1; w0 += -8; w0 += w1; w0 -= 3; w0 -= w2; w0 *= 7; w0 *= w3;"
		"w0 /= 9; w0 /= w4; w0 |= 0xff; w0 |= w1; w0 &= 0xffff; w0 &= w2;"
		"w0 <<= 1; w0 <<= 31; w0 <<= w3; w0 >>= 2; w0 >>= w4; w0 s>>= 3; w0 s>>= w5;"
		"w0 ^= 0x55; w0 ^= w1; w0 = -w0; w6 = w0;"
		"r1 = be16 r1; r2 = be32 r2; r3 = be64 r3; r1 = le16 r1; r2 = le32 r2; r3 = le64 r3;"
		::: CLOBBER);
	return 0;
}

SEC("tp/isa/jumps") int jumps(void *ctx)
{
	asm volatile(
		"r1 = 1; r2 = 2;"
		"if r1 == 0 goto +0; if r1 != -1 goto +0; if r1 > 16 goto +0; if r1 >= 2147483647 goto +0;"
		"if r1 < 3 goto +0; if r1 <= 4 goto +0; if r1 s> -5 goto +0; if r1 s>= 6 goto +0;"
		"if r1 s< 7 goto +0; if r1 s<= -2147483648 goto +0;"
		"if r1 == r2 goto +0; if r1 != r2 goto +0; if r1 > r2 goto +0; if r1 >= r2 goto +0;"
		"if r1 < r2 goto +0; if r1 <= r2 goto +0; if r1 s> r2 goto +0; if r1 s>= r2 goto +0;"
		"if r1 s< r2 goto +0; if r1 s<= r2 goto +0;"
		"if w1 == 0 goto +0; if w1 != -1 goto +0; if w1 > 16 goto +0; if w1 >= 17 goto +0;"
		"if w1 < 3 goto +0; if w1 <= 4 goto +0; if w1 s> -5 goto +0; if w1 s>= 6 goto +0;"
		"if w1 s< 7 goto +0; if w1 s<= 8 goto +0;"
		"if w1 == w2 goto +0; if w1 != w2 goto +0; if w1 > w2 goto +0; if w1 >= w2 goto +0;"
		"if w1 < w2 goto +0; if w1 <= w2 goto +0; if w1 s> w2 goto +0; if w1 s>= w2 goto +0;"
		"if w1 s< w2 goto +0; if w1 s<= w2 goto +0;"
		"goto +2; r1 = 0; r2 = 0; if r1 == r2 goto -3; goto -1; if r1 != 0 goto +40;"
		::: CLOBBER);
	return 0;
}

SEC("tp/isa/mem") int mem(void *ctx)
{
	asm volatile(
		"r1 = r10; r1 += -64;"
		"r2 = *(u8 *)(r1 + 0); r3 = *(u16 *)(r1 + 2); r4 = *(u32 *)(r1 + 4); r5 = *(u64 *)(r1 + 8);"
		"r2 = *(u8 *)(r10 - 1); r3 = *(u16 *)(r10 - 32768); r4 = *(u32 *)(r10 - 4); r5 = *(u64 *)(r1 + 32767);"
		"*(u8 *)(r10 - 1) = r2; *(u16 *)(r10 - 2) = r3; *(u32 *)(r10 - 8) = r4; *(u64 *)(r10 - 16) = r5;"
		"r0 = *(u8 *)skb[0]; r0 = *(u16 *)skb[14]; r0 = *(u32 *)skb[-4];"
		"r0 = *(u8 *)skb[r6]; r0 = *(u16 *)skb[r7]; r0 = *(u32 *)skb[r8];"
		"r1 = 0 ll; r2 = -1 ll; r3 = 0x7fffffffffffffff ll; r4 = 0x8000000000000000 ll; r5 = 4294967296 ll;"
		::: CLOBBER);
	return 0;
}

SEC("tp/isa/atomics") int atomics(u64 *ctx)
{
	u64 v = ctx[0];
	u32 w = (u32)ctx[1];
	u64 r;
	u32 q;

	asm volatile(
		"r1 = r10; r1 += -16; r2 = 1;"
		"lock *(u64 *)(r1 + 0) += r2; lock *(u64 *)(r1 + 0) |= r2;"
		"lock *(u64 *)(r1 + 0) &= r2; lock *(u64 *)(r1 - 8) ^= r2;"
		"lock *(u32 *)(r1 + 8) += w2; lock *(u32 *)(r1 + 8) |= w2;"
		"lock *(u32 *)(r1 + 8) &= w2; lock *(u32 *)(r1 + 8) ^= w2;"
		::: CLOBBER);
	/* the clang 14 assembler cannot parse the fetch forms; the compiler emits them */
	r = __sync_fetch_and_add(&isa_g64, v) + __sync_fetch_and_or(&isa_g64, v) +
	    __sync_fetch_and_and(&isa_g64, v) + __sync_fetch_and_xor(&isa_g64, v);
	q = __sync_fetch_and_add(&isa_g32, w) + __sync_fetch_and_or(&isa_g32, w) +
	    __sync_fetch_and_and(&isa_g32, w) + __sync_fetch_and_xor(&isa_g32, w);
	r += __sync_lock_test_and_set(&isa_g64, r) + __sync_val_compare_and_swap(&isa_g64, v, r);
	q += __sync_lock_test_and_set(&isa_g32, q) + __sync_val_compare_and_swap(&isa_g32, w, q);
	return (int)(r + q);
}

/* compiler-generated code: map lookups, globals, helpers, subprograms, a callback, branches, bswap */
static __attribute__((noinline)) u64 mix(u64 a, u32 b)
{
	if ((s64)a < (s32)b)
		return a * 3 + b;
	return (a >> 7) ^ __builtin_bswap64(a) ^ __builtin_bswap32(b) ^ __builtin_bswap16((u16)b);
}

static long step(u32 i, void *data)
{
	*(u64 *)data += i;
	return 0;
}

SEC("tp/isa/c") int c_code(u64 *ctx)
{
	u32 key = (u32)ctx[0];
	u64 *val = bpf_map_lookup_elem(&isa_counts, &key);
	u64 sum = 0;

	if (!val)
		return 0;
	__sync_fetch_and_add(val, 1);
	__sync_fetch_and_add(&isa_g32, key);
	sum = __sync_fetch_and_add(&isa_g64, ctx[1]) + __sync_val_compare_and_swap(&isa_g32, key, 3);
	bpf_loop(8, step, &sum, 0);
	return (int)(mix(sum + isa_ro, key) & 0xff);
}

char LICENSE[] SEC("license") = "GPL";
