/* flood.o: floods small ring buffers and a perf event array so tests can check that every attempt is either
 * delivered or counted as lost.
 *
 * Records form a tagged family (enum ev_type → struct ev_tick / struct ev_note, `type` first). `flood` (socket
 * filter, run with BPF_PROG_TEST_RUN and a repeat count) sends one record per run to `events`; `on_getppid`
 * (tracepoint) sends `per_call` records per getppid() of `target_tgid` to `events` with `submit_flags`, and one
 * sample per call to the perf event array `samples`. Failed reserves are counted in .bss `events_drops`
 * (the drop-counter convention); every attempt in `attempts`.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

enum ev_type {
	EV_TICK = 1,
	EV_NOTE = 2,
	EV_KINDS = 3,
};

struct ev_tick {
	enum ev_type type;	/* EV_TICK */
	__u32 cpu;
	__u64 ts;		/* bpf_ktime_get_ns() */
	__u64 n;		/* attempt number */
	__u32 pid;
	__u32 pad;
};

struct ev_note {
	enum ev_type type;	/* EV_NOTE */
	__u32 text_len;		/* bytes of text sent */
	__u64 ts;
	__u64 n;
	char comm[16];
	char text[32];
};

/* the benchmark kit's record: u64 seq, ts; u32 cpu, pid; u8 pad[40] */
struct rec {
	__u64 seq;
	__u64 ts;
	__u32 cpu;
	__u32 pid;
	__u8 pad[40];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} samples SEC(".maps");

const volatile __u32 target_tgid = 0;
const volatile __u32 per_call = 1;
const volatile __u64 submit_flags = 0;

__u64 attempts = 0;
__u64 events_drops = 0;
__u64 sample_attempts = 0;

/* keep the record types in BTF (nothing else names them) */
struct ev_tick *ev_tick_type __attribute__((unused));
struct ev_note *ev_note_type __attribute__((unused));
struct rec *rec_type __attribute__((unused));

/* from_task: the caller runs in a task's context (a tracepoint). Socket filters may not ask for the current
 * task's comm or pid on older kernels (6.1 among them), so `flood` sends a fixed comm and pid 0. */
static __always_inline void send(__u64 n, __u64 flags, int from_task)
{
	if (n & 1) {
		struct ev_note *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

		if (!e) {
			__sync_fetch_and_add(&events_drops, 1);
			return;
		}
		e->type = EV_NOTE;
		e->text_len = 5;
		e->ts = bpf_ktime_get_ns();
		e->n = n;
		if (from_task)
			bpf_get_current_comm(e->comm, sizeof(e->comm));
		else
			__builtin_memcpy(e->comm, "socket", 7);
		__builtin_memcpy(e->text, "hello, world", 13);
		bpf_ringbuf_submit(e, flags);
		return;
	}
	struct ev_tick *t = bpf_ringbuf_reserve(&events, sizeof(*t), 0);

	if (!t) {
		__sync_fetch_and_add(&events_drops, 1);
		return;
	}
	t->type = EV_TICK;
	t->cpu = bpf_get_smp_processor_id();
	t->ts = bpf_ktime_get_ns();
	t->n = n;
	t->pid = from_task ? bpf_get_current_pid_tgid() >> 32 : 0;
	t->pad = 0;
	bpf_ringbuf_submit(t, flags);
}

SEC("socket")
int flood(struct __sk_buff *skb)
{
	send(__sync_fetch_and_add(&attempts, 1), 0, 0);
	return 0;
}

static long emit_one(__u32 i, void *ctx)
{
	send(__sync_fetch_and_add(&attempts, 1), submit_flags, 1);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	bpf_loop(per_call, emit_one, 0, 0);

	struct ev_tick s = {
		.type = EV_TICK,
		.cpu = bpf_get_smp_processor_id(),
		.ts = bpf_ktime_get_ns(),
		.n = __sync_fetch_and_add(&sample_attempts, 1),
		.pid = target_tgid,
	};
	bpf_perf_event_output(ctx, &samples, BPF_F_CURRENT_CPU, &s, sizeof(s));
	return 0;
}
