/* A Reno-like TCP congestion control shared by struct_ops_tcp.c (.struct_ops) and struct_ops_link.c
 * (.struct_ops.link). Each callback bumps a .bss counter, so a test can prove the kernel ran it.
 *
 * struct tcp_congestion_ops is declared here with only the members used and in an order of its own: the
 * loader must place each member at the kernel's offset by name, as libbpf does.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct sock;

struct tcp_sock {
	u32 snd_cwnd;
	u32 snd_cwnd_cnt;
	u32 snd_ssthresh;
	u32 snd_cwnd_clamp;
} __attribute__((preserve_access_index));

struct tcp_congestion_ops {
	char name[16];
	u32 flags;
	void (*init)(struct sock *sk);
	u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, u32 ack, u32 acked);
	u32 (*undo_cwnd)(struct sock *sk);
};

u64 init_calls;
u64 ssthresh_calls;
u64 cong_avoid_calls;
u64 undo_calls;

SEC("struct_ops/rb_init")
void BPF_PROG(rb_init, struct sock *sk)
{
	__sync_fetch_and_add(&init_calls, 1);
}

SEC("struct_ops/rb_ssthresh")
u32 BPF_PROG(rb_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	u32 half = tp->snd_cwnd >> 1;

	__sync_fetch_and_add(&ssthresh_calls, 1);
	return half > 2 ? half : 2;
}

SEC("struct_ops/rb_cong_avoid")
void BPF_PROG(rb_cong_avoid, struct sock *sk, u32 ack, u32 acked)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	u32 cwnd = tp->snd_cwnd;

	__sync_fetch_and_add(&cong_avoid_calls, 1);
	if (cwnd < tp->snd_ssthresh) { /* slow start */
		cwnd += acked;
	} else { /* congestion avoidance: one segment per window of ACKs */
		u32 cnt = tp->snd_cwnd_cnt + acked;

		if (cnt >= cwnd) {
			cnt = 0;
			cwnd++;
		}
		tp->snd_cwnd_cnt = cnt;
	}
	if (cwnd > tp->snd_cwnd_clamp)
		cwnd = tp->snd_cwnd_clamp;
	tp->snd_cwnd = cwnd;
}

SEC("struct_ops/rb_undo_cwnd")
u32 BPF_PROG(rb_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	__sync_fetch_and_add(&undo_calls, 1);
	return tp->snd_cwnd;
}

char LICENSE[] SEC("license") = "GPL";
