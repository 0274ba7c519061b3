// SPDX-License-Identifier: GPL-2.0
/*
 * claude_monitor: a kernel-level audit of what the Claude Code CLI does on a host.
 *
 * Identifies Claude processes when they exec (comm and filename after exec, and the script argument of an
 * interpreter such as node), or when a process renames itself into a match; tracks their whole process tree
 * (fork children inherit root_pid and depth + 1); records every exec (filename, bounded argv), fork, rename,
 * connect (inet, inet6, unix, with the syscall's return value) and one exit per process.
 *
 * The record structs below are the single source of truth for decoding: user space reads their layout from
 * this object's BTF. Every record starts with the same header fields (REC_HEADER), `type` first.
 *
 * Costs: every handler first reads the tgid's byte in `tracked_pids` (an inlined array lookup) and returns
 * when the process is not tracked; exec alone must look further (the identification rules). Records are
 * submitted with BPF_RB_NO_WAKEUP (the consumer drains on a timer) and force a wakeup when the ring fills
 * past `wakeup_bytes` (each CPU checks the fill once per 1/64 of it queued). Connect runs at the syscall's
 * exit only, reading the arguments from the thread's saved registers. A failed reserve is counted per record kind (the kernel keeps no ring-buffer drop
 * count) in counters.kind[].lost, which the consumer turns into `lost` records.
 */
#include "claude_monitor_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define COMM_LEN 16
#define FILENAME_LEN 256
#define ARGV_BUF 4096		/* hard cap of argv_max_bytes */
#define ARGV_MAX_ARGS 64	/* hard cap of argv_max_args */
#define RULE_LEN 64
#define MAX_PATH_RULES 16
#define ENDPOINT_LEN 32
#define UNIX_PATH_LEN 108
#define TICK_NS 10000000ULL	/* USER_HZ = 100: /proc/PID/stat start times are in 10 ms ticks */
#define TEXT_MASK 8191		/* bounds any offset into the exec scratch text for the verifier */

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10

/* Record kinds; the value of the `type` field. */
enum rec_type {
	REC_EXEC = 1,
	REC_FORK = 2,
	REC_EXIT = 3,
	REC_CONNECT = 4,
	REC_RENAME = 5,
	REC_KINDS = 6,
};

/* Bits of a record's `flags`. */
enum rec_flags {
	RF_SEEN_AT_START = 1,	/* the process was already running when the monitor started */
	RF_NEW_ROOT = 2,	/* this record started tracking a new Claude process tree */
};

/* Why an exec or rename started tracking (`match` of exec and rename records). */
enum match_kind {
	MATCH_INHERITED = 0,	/* already tracked: a descendant, or a Claude process exec'ing again */
	MATCH_COMM = 1,
	MATCH_PATH = 2,		/* a path rule matched the exec'd filename */
	MATCH_SCRIPT = 3,	/* a path rule matched the script argument of an interpreter */
	MATCH_RENAME = 4,
};

/* Values of the comm rule map. */
enum comm_rule {
	COMM_TRACK = 1,
	COMM_INTERPRETER = 2,
};

/* Path rule flags. */
enum path_rule_flags {
	PATH_BASENAME = 1,	/* match the whole last path component, not a substring */
};

/* Bits of a tracked process's proc_info.flags. */
enum proc_flags {
	PI_SEEN_AT_START = 1,	/* seeded from /proc by user space */
	PI_COARSE_START = 2,	/* start is only known to the 10 ms tick (from /proc/PID/stat) */
};

#define REC_HEADER                                                                                            \
	enum rec_type type;                                                                                   \
	__u32 flags;                                                                                          \
	__u64 ts;		/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */                                     \
	__u32 pid;		/* tgid */                                                                    \
	__u32 tid;                                                                                            \
	__u32 ppid;		/* tgid of the real parent */                                                 \
	__u32 uid;                                                                                            \
	__u32 root_pid;		/* the Claude process this tree belongs to */                                 \
	__u32 depth;		/* 0 for the Claude process, +1 per fork */                                   \
	char comm[COMM_LEN];

struct rec_header {
	REC_HEADER
};

struct rec_exec {
	REC_HEADER
	enum match_kind match;
	__u32 argc;		/* arguments recorded in argv */
	__u32 argv_len;		/* bytes of argv sent */
	__u32 argv_truncated;	/* more arguments or bytes existed than the limits allow */
	char filename[FILENAME_LEN];
	__u8 argv[ARGV_BUF];	/* NUL-separated strings; only argv_len bytes are sent */
};

struct rec_fork {
	REC_HEADER
	__u32 child_pid;
	__u32 pad;
};

struct rec_exit {
	REC_HEADER
	__s32 exit_code;
	__u32 signal;
	__u32 core_dumped;
	__u32 pad;
	__u64 duration_ns;
};

struct rec_connect {
	REC_HEADER
	__u16 family;		/* AF_INET, AF_INET6 or AF_UNIX */
	__u16 port;		/* host byte order */
	__s32 ret;		/* 0 or -errno from the syscall's exit */
	__u32 path_len;		/* bytes of path (unix; a leading NUL marks an abstract socket) */
	__u8 addr[16];		/* inet: 4 bytes, inet6: 16 bytes, network order */
	char endpoint[ENDPOINT_LEN];	/* name of the matching endpoint CIDR, or empty */
	__u8 path[UNIX_PATH_LEN];	/* bytes, not a C string: abstract names start with NUL; inet records
					 * are sent without it (decoders zero-fill short records) */
};

struct rec_rename {
	REC_HEADER
	enum match_kind match;	/* MATCH_RENAME when this rename started tracking */
	__u32 pad;
	char old_comm[COMM_LEN];
	char new_comm[COMM_LEN];
};

/*
 * The record catalogue for user space, never read by the programs: member `x` (a zero-length array of
 * `struct rec_x`) names the layout of records whose `type` is REC_X. Declaring it puts every record struct
 * and enum into this object's BTF, which is all a decoder needs.
 */
const volatile struct record_types {
	struct rec_exec exec[0];
	struct rec_fork fork[0];
	struct rec_exit exit[0];
	struct rec_connect connect[0];
	struct rec_rename rename[0];
	enum rec_flags flags;
	enum comm_rule comm_rule;
	enum path_rule_flags path_rule_flags;
	enum proc_flags proc_flags;
} record_types;

/* Per-kind event counts; `seen` counts every event of the kind on the host, tracked or not. */
struct kind_counters {
	__u64 seen;
	__u64 tracked;
	__u64 emitted;
	__u64 lost;		/* ring reserve/output failures: records the kernel could not queue; the
				 * data path's drop-counter convention reads every `lost` in map `counters` */
};

struct counters {
	struct kind_counters kind[REC_KINDS];	/* indexed by enum rec_type; [0] is unused */
	__u64 filtered;		/* connects dropped by only_endpoints */
	__u64 tracked_full;	/* processes that could not be tracked: the tracked map was full */
	__u64 wakeups;		/* forced consumer wakeups */
	__u64 read_errors;	/* user memory that could not be read (sockaddr, argv) */
};

/* A tracked process, keyed by tgid. (tgid, start) is the identity: a reused pid never matches. */
struct proc_info {
	__u64 start;		/* group leader's start_boottime, ns */
	__u32 root_pid;
	__u32 depth;
	__u32 flags;		/* PI_* */
	__u32 pad;
};

/* A thread's connect state, made at its first tracked connect: a copy of its process's tracked entry (its
 * later connects need no hash lookup: a live process's entry does not change), and the endpoint lookup of
 * its last inet connect (a thread that reconnects to the same address needs no LPM lookup: `endpoints` is
 * filled before the programs attach and not changed while they run). */
struct thread_proc {
	struct proc_info proc;
	__u8 last_addr[16];	/* IPv6 or IPv4-mapped address of the last inet connect */
	__u32 last_state;	/* LAST_* */
	__u32 pad;
	char last_endpoint[ENDPOINT_LEN];
};

enum last_state {
	LAST_NONE = 0,		/* no lookup cached */
	LAST_NO_ENDPOINT = 1,	/* last_addr matched no endpoint */
	LAST_ENDPOINT = 2,	/* last_addr is in last_endpoint */
};

/* LPM key: IPv4 is stored IPv4-mapped (::ffff:a.b.c.d, prefix + 96), so one trie serves both families. */
struct endpoint_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct endpoint_value {
	char name[ENDPOINT_LEN];
};

struct path_rule {
	__u32 len;
	__u32 flags;		/* enum path_rule_flags */
	char text[RULE_LEN];
};

/* The exec record is built here, then sent with bpf_ringbuf_output (only its used bytes). The slack after
 * it lets the verifier bound every masked offset into filename/argv. */
struct exec_scratch {
	struct rec_exec rec;
	char slack[ARGV_BUF + 256];
};

/* Limits and rules set from user space before load (read-only to the program). */
const volatile __u32 argv_max_args = 32;
const volatile __u32 argv_max_bytes = 2048;
const volatile __u32 only_endpoints = 0;
const volatile __u64 wakeup_bytes = 256 * 1024;
const volatile struct path_rule path_rules[MAX_PATH_RULES] = {
	{ 17, 0, "/claude/versions/" },
	{ 26, 0, "@anthropic-ai/claude-code/" },
	{ 6, PATH_BASENAME, "claude" },
	{ 10, PATH_BASENAME, "claude.exe" },
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct proc_info);
} tracked SEC(".maps");

/*
 * The fast "not tracked" test: one byte per pid (PID_MAX_LIMIT = 2^22 pids, 8 per entry, 4 MiB), nonzero
 * while `tracked` may hold that tgid. An inlined array lookup costs a few ns where a hash lookup costs tens;
 * `tracked` stays the authority (a stale byte only costs that lookup). A byte, not a bit, so the kernel and
 * user space (seeding through mmap) each write whole bytes of their own and never need atomics.
 */
#define PID_BYTES_ENTRIES (1 << 19)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PID_BYTES_ENTRIES);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} tracked_pids SEC(".maps");

/* Task-local storage: a lookup is a pointer read on the task, and the slot goes away with the thread. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_proc);
} thread_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_value);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, char[COMM_LEN]);
	__type(value, __u32);
} comm_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_scratch);
} exec_scratch SEC(".maps");

#define WAKE_CHECK_SHIFT 6	/* a CPU checks the ring's fill after queuing 1/64 of wakeup_bytes (see wake_flag) */

/* Bytes of records this CPU queued since it last checked the ring's fill. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} unchecked_bytes SEC(".maps");

static __always_inline struct counters *cnt(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

static __always_inline void count_seen(__u32 kind)
{
	struct counters *c = cnt();

	if (c && kind < REC_KINDS)
		c->kind[kind].seen++;
}

static __always_inline void count_tracked(__u32 kind)
{
	struct counters *c = cnt();

	if (c && kind < REC_KINDS)
		c->kind[kind].tracked++;
}

/* Count an emit attempt: emitted on success, lost when the ring had no room. */
static __always_inline void count_emit(__u32 kind, long err)
{
	struct counters *c = cnt();

	if (!c || kind >= REC_KINDS)
		return;
	if (err)
		c->kind[kind].lost++;
	else
		c->kind[kind].emitted++;
}

/*
 * NO_WAKEUP normally; FORCE_WAKEUP for the record that takes the ring past wakeup_bytes. Waking once per
 * crossing, not for every record above it, keeps a consumer that is already awake from costing each producer
 * a wakeup (about a microsecond); a wakeup lost to a race between CPUs is covered by the consumer's timer.
 * A CPU looks at the ring's fill (bpf_ringbuf_query) only once it has queued WAKE_CHECK_SHIFT's share of
 * wakeup_bytes since it last looked (every record when that is less than a record: an exec record, or a
 * small wakeup_bytes), and then counts a crossing by everything it queued since: the wakeup comes at most
 * 1/64 of wakeup_bytes late, and small records (connects) skip the query most of the time.
 * `size` is the record's payload; `reserved` says whether the ring already counts it (reserve/submit) or not
 * yet (bpf_ringbuf_output). wakeup_bytes = 0 leaves draining to the timer alone.
 */
static __always_inline __u64 wake_flag(__u32 size, bool reserved)
{
	__u64 rec = ((__u64)size + 8 + 7) & ~7ULL;
	__u32 zero = 0;
	__u64 *unchecked, since, avail, before;
	struct counters *c;

	if (!wakeup_bytes)
		return BPF_RB_NO_WAKEUP;
	unchecked = bpf_map_lookup_elem(&unchecked_bytes, &zero);
	if (!unchecked)
		return BPF_RB_NO_WAKEUP;
	since = *unchecked + rec;
	if (since < (wakeup_bytes >> WAKE_CHECK_SHIFT)) {
		*unchecked = since;
		return BPF_RB_NO_WAKEUP;
	}
	*unchecked = 0;
	avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (!reserved)
		avail += rec;
	before = avail > since ? avail - since : 0;
	if (before >= wakeup_bytes || avail < wakeup_bytes)
		return BPF_RB_NO_WAKEUP;
	c = cnt();
	if (c)
		c->wakeups++;
	return BPF_RB_FORCE_WAKEUP;
}

/* Task pointers here are BTF-typed (bpf_get_current_task_btf() or a tp_btf argument): the verifier lets
 * them be read with plain loads, which cost a few ns where bpf_probe_read_kernel costs tens. */

/* Start time of the task's group leader: with the tgid, the identity of a process. */
static __always_inline __u64 leader_start(struct task_struct *task)
{
	return task->group_leader->start_boottime;
}

static __always_inline bool same_process(const struct proc_info *p, __u64 start)
{
	if (p->flags & PI_COARSE_START)
		return start / TICK_NS == p->start / TICK_NS;
	return p->start == start;
}

static __always_inline __u8 *pid_byte(__u32 tgid)
{
	__u32 idx = (tgid >> 3) & (PID_BYTES_ENTRIES - 1);
	__u8 *w = bpf_map_lookup_elem(&tracked_pids, &idx);

	return w ? w + (tgid & 7) : NULL;
}

/* False when tgid is certainly not tracked. */
static __always_inline bool maybe_tracked(__u32 tgid)
{
	__u8 *b = pid_byte(tgid);

	return b && *b;
}

static __always_inline void set_pid_byte(__u32 tgid, __u8 v)
{
	__u8 *b = pid_byte(tgid);

	if (b)
		*b = v;
}

static __always_inline void stop_tracking(__u32 tgid)
{
	bpf_map_delete_elem(&tracked, &tgid);
	set_pid_byte(tgid, 0);
}

/* The tracked entry of tgid if it describes the same process (a stale entry of a reused pid is dropped). */
static __always_inline struct proc_info *lookup_tracked(__u32 tgid, __u64 start)
{
	struct proc_info *p;

	if (!maybe_tracked(tgid))
		return NULL;
	p = bpf_map_lookup_elem(&tracked, &tgid);
	if (!p)
		return NULL;
	if (!same_process(p, start)) {
		stop_tracking(tgid);
		return NULL;
	}
	return p;
}

static __always_inline bool start_tracking(__u32 tgid, __u64 start, __u32 root, __u32 depth, __u32 flags)
{
	struct proc_info info = { .start = start, .root_pid = root, .depth = depth, .flags = flags };

	set_pid_byte(tgid, 1);
	if (bpf_map_update_elem(&tracked, &tgid, &info, BPF_ANY)) {
		struct counters *c = cnt();

		set_pid_byte(tgid, 0);
		if (c)
			c->tracked_full++;
		return false;
	}
	return true;
}

static __always_inline void fill_common(struct rec_header *h, __u32 type, __u32 tgid,
					const struct proc_info *p)
{
	h->type = type;
	h->flags = (p->flags & PI_SEEN_AT_START) ? RF_SEEN_AT_START : 0;
	h->ts = bpf_ktime_get_ns();
	h->pid = tgid;
	h->root_pid = p->root_pid;
	h->depth = p->depth;
}

/* The common header of an event of `task` (a thread of process tgid, described by p). */
static __always_inline void fill_header(void *rec, __u32 type, struct task_struct *task, __u32 tgid,
					const struct proc_info *p)
{
	struct rec_header *h = rec;

	fill_common(h, type, tgid, p);
	h->tid = task->pid;
	h->ppid = task->real_parent->tgid;
	h->uid = task->real_cred->uid.val;
	__builtin_memcpy(h->comm, task->comm, sizeof(h->comm));
}

/* ---- exec ---------------------------------------------------------------------------------------------- */

struct match_ctx {
	__u32 base;		/* offset of the text within the scratch, from filename */
	__u32 rule;
	__u32 found;
};

static __always_inline char *scratch_text(struct exec_scratch *s, __u32 off)
{
	return (char *)s->rec.filename + (off & TEXT_MASK);
}

/* bpf_loop callback: does path rule c->rule start at text position base + i? */
static long match_at(__u32 i, struct match_ctx *c)
{
	__u32 zero = 0;
	struct exec_scratch *s = bpf_map_lookup_elem(&exec_scratch, &zero);
	__u32 r = c->rule & (MAX_PATH_RULES - 1);
	__u32 len = path_rules[r].len;
	char *text;

	if (!s)
		return 1;
	text = scratch_text(s, c->base + i);
	for (__u32 j = 0; j < RULE_LEN; j++) {
		if (j >= len)
			break;
		if (text[j] != path_rules[r].text[j])
			return 0;
	}
	c->found = 1;
	return 1;
}

/* Does any path rule match the NUL-terminated text of length len at scratch offset base? */
static __always_inline bool match_path(struct exec_scratch *s, __u32 base, __u32 len)
{
	struct match_ctx c = { .base = base };

	for (__u32 r = 0; r < MAX_PATH_RULES; r++) {
		__u32 rlen = path_rules[r].len;

		if (rlen == 0 || rlen > RULE_LEN || rlen > len)
			continue;
		c.rule = r;
		c.found = 0;
		if (path_rules[r].flags & PATH_BASENAME) {
			__u32 at = len - rlen;

			/* the component must be whole: at the start, or right after a '/' */
			if (at > 0 && *scratch_text(s, base + at - 1) != '/')
				continue;
			match_at(at, &c);
		} else {
			bpf_loop(len - rlen + 1, match_at, &c, 0);
		}
		if (c.found)
			return true;
	}
	return false;
}

struct argv_ctx {
	unsigned long p;	/* next user address */
	unsigned long end;	/* mm->arg_end */
	__u32 off;		/* bytes copied so far */
	__u32 max_bytes;
	__u32 argc;
	__u32 truncated;
	__u32 arg0;		/* length of argv[0] + 1: where argv[1] starts */
	__u32 arg1_len;		/* strlen(argv[1]) */
};

/* bpf_loop callback: copy one argument string; returns 1 to stop. */
static long read_arg(__u32 i, struct argv_ctx *a)
{
	__u32 zero = 0;
	struct exec_scratch *s = bpf_map_lookup_elem(&exec_scratch, &zero);
	__u32 room;
	long n;

	if (!s || a->p >= a->end)
		return 1;
	if (a->off >= a->max_bytes) {
		a->truncated = 1;
		return 1;
	}
	room = (a->max_bytes - a->off) & (ARGV_BUF - 1);
	if (room == 0)
		room = ARGV_BUF;
	n = bpf_probe_read_user_str(&s->rec.argv[a->off & (ARGV_BUF - 1)], room, (const void *)a->p);
	if (n <= 0) {
		struct counters *c = cnt();

		if (c)
			c->read_errors++;
		return 1;
	}
	if (i == 0)
		a->arg0 = n;
	else if (i == 1)
		a->arg1_len = n - 1;
	a->argc++;
	a->off += n;
	a->p += n;
	if ((__u32)n == room && a->p < a->end) {
		a->truncated = 1;
		return 1;
	}
	return 0;
}

/* Copy the new image's argv into the scratch record: up to argv_max_args strings and argv_max_bytes bytes,
 * or, for an interpreter not yet identified (`wide`), up to the hard caps so that a long argv[0] cannot hide
 * the script argument from the path rules; clamp_argv applies the configured limits afterwards. */
static __always_inline void read_argv(struct exec_scratch *s, struct task_struct *task, struct argv_ctx *a,
				      bool wide)
{
	__u32 max_args = argv_max_args < ARGV_MAX_ARGS ? argv_max_args : ARGV_MAX_ARGS;

	if (wide && max_args < 2)
		max_args = 2;
	a->p = task->mm->arg_start;
	a->end = task->mm->arg_end;
	a->max_bytes = wide || argv_max_bytes > ARGV_BUF ? ARGV_BUF : argv_max_bytes;
	bpf_loop(max_args, read_arg, a, 0);
	if (a->argc == max_args && a->p < a->end)
		a->truncated = 1;
	s->rec.argc = a->argc;
	s->rec.argv_truncated = a->truncated;
	s->rec.argv_len = a->off > a->max_bytes ? a->max_bytes : a->off;
}

/* Cut an argv read `wide` down to the configured limits. */
static __always_inline void clamp_argv(struct exec_scratch *s, struct argv_ctx *a)
{
	if (argv_max_args < 2 && s->rec.argc > 1) {
		s->rec.argc = 1;
		s->rec.argv_len = a->arg0;
		s->rec.argv_truncated = 1;
	}
	if (s->rec.argv_len > argv_max_bytes) {
		s->rec.argv_len = argv_max_bytes;
		s->rec.argv_truncated = 1;
	}
}

SEC("tp/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0, match = MATCH_INHERITED, flen, size;
	struct argv_ctx a = {};
	struct exec_scratch *s;
	struct proc_info *p;
	__u32 *rule;
	long n;

	count_seen(REC_EXEC);
	s = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!s)
		return 0;
	p = lookup_tracked(tgid, leader_start(task));
	__builtin_memcpy(s->rec.comm, task->comm, sizeof(s->rec.comm));
	rule = bpf_map_lookup_elem(&comm_rules, s->rec.comm);
	if (!p && rule && *rule == COMM_TRACK)
		match = MATCH_COMM;
	n = bpf_probe_read_kernel_str(s->rec.filename, sizeof(s->rec.filename),
				      (void *)ctx + (ctx->__data_loc_filename & 0xFFFF));
	flen = n > 0 ? n - 1 : 0;
	if (!p && !match && match_path(s, 0, flen))
		match = MATCH_PATH;
	if (!p && !match && !(rule && *rule == COMM_INTERPRETER))
		return 0;

	if (!p && !match) {
		/* an interpreter: does its script argument (argv[1]) match a path rule? */
		read_argv(s, task, &a, true);
		if (a.arg1_len == 0 || !match_path(s, FILENAME_LEN + a.arg0, a.arg1_len))
			return 0;
		match = MATCH_SCRIPT;
		clamp_argv(s, &a);
	} else {
		read_argv(s, task, &a, false);
	}
	if (!p) {
		if (!start_tracking(tgid, leader_start(task), tgid, 0, 0))
			return 0;
		p = bpf_map_lookup_elem(&tracked, &tgid);
		if (!p)
			return 0;
	}
	count_tracked(REC_EXEC);
	fill_header(&s->rec, REC_EXEC, task, tgid, p);
	if (match)
		s->rec.flags |= RF_NEW_ROOT;
	s->rec.match = match;
	size = s->rec.argv_len;
	if (size > ARGV_BUF)
		size = ARGV_BUF;
	size += __builtin_offsetof(struct rec_exec, argv);
	count_emit(REC_EXEC, bpf_ringbuf_output(&events, &s->rec, size, wake_flag(size, false)));
	return 0;
}

/* ---- fork ---------------------------------------------------------------------------------------------- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 child_tgid;
	struct proc_info *p;
	struct rec_fork *r;

	count_seen(REC_FORK);
	if (!maybe_tracked(tgid))
		return 0;
	child_tgid = child->tgid;
	if (child_tgid == tgid)	/* a new thread, not a new process */
		return 0;
	p = lookup_tracked(tgid, leader_start(task));
	if (!p)
		return 0;
	count_tracked(REC_FORK);
	/* a child forked now is seen from its birth: it does not inherit PI_SEEN_AT_START */
	if (!start_tracking(child_tgid, child->start_boottime, p->root_pid, p->depth + 1, 0))
		return 0;
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count_emit(REC_FORK, -1);
		return 0;
	}
	fill_header(r, REC_FORK, task, tgid, p);
	r->child_pid = child_tgid;
	r->pad = 0;
	bpf_ringbuf_submit(r, wake_flag(sizeof(*r), true));
	count_emit(REC_FORK, 0);
	return 0;
}

/* ---- exit ---------------------------------------------------------------------------------------------- */

SEC("tp/sched/sched_process_exit")
int handle_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid;
	struct proc_info *p;
	struct rec_exit *r;
	bool group_dead;
	int code;

	/* the tracepoint fires per thread; the process ends with the thread that drops signal->live to 0 */
	if (bpf_core_field_exists(ctx->group_dead))
		group_dead = ctx->group_dead;
	else
		group_dead = task->signal->live.counter == 0;
	if (!group_dead)
		return 0;
	count_seen(REC_EXIT);
	tgid = bpf_get_current_pid_tgid() >> 32;
	p = lookup_tracked(tgid, leader_start(task));
	if (!p)
		return 0;
	count_tracked(REC_EXIT);
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count_emit(REC_EXIT, -1);
	} else {
		fill_header(r, REC_EXIT, task, tgid, p);
		code = task->exit_code;
		r->exit_code = (code >> 8) & 0xff;
		r->signal = code & 0x7f;
		r->core_dumped = (code & 0x80) ? 1 : 0;
		r->pad = 0;
		r->duration_ns = bpf_ktime_get_boot_ns() - leader_start(task);
		bpf_ringbuf_submit(r, wake_flag(sizeof(*r), true));
		count_emit(REC_EXIT, 0);
	}
	stop_tracking(tgid);
	return 0;
}

/* ---- rename -------------------------------------------------------------------------------------------- */

SEC("tp_btf/task_rename")
int BPF_PROG(handle_rename, struct task_struct *task, const char *comm)
{
	__u32 tgid = task->tgid;
	__u32 match = 0;
	char newcomm[COMM_LEN] = {};
	struct proc_info *p;
	struct rec_rename *r;

	count_seen(REC_RENAME);
	/* exec renames the task to the new image's name; sched_process_exec reports that */
	if (BPF_CORE_READ_BITFIELD(task, in_execve))
		return 0;
	p = lookup_tracked(tgid, leader_start(task));
	bpf_probe_read_kernel_str(newcomm, sizeof(newcomm), comm);
	if (!p) {
		__u32 *rule = bpf_map_lookup_elem(&comm_rules, newcomm);

		/* a process (its main thread) naming itself as Claude starts a new tree */
		if (!rule || *rule != COMM_TRACK || task->pid != tgid)
			return 0;
		if (!start_tracking(tgid, leader_start(task), tgid, 0, 0))
			return 0;
		p = bpf_map_lookup_elem(&tracked, &tgid);
		if (!p)
			return 0;
		match = MATCH_RENAME;
	}
	count_tracked(REC_RENAME);
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count_emit(REC_RENAME, -1);
		return 0;
	}
	fill_header(r, REC_RENAME, task, tgid, p);
	if (match)
		r->flags |= RF_NEW_ROOT;
	r->match = match;
	r->pad = 0;
	__builtin_memcpy(r->old_comm, task->comm, sizeof(r->old_comm));	/* still the old name here */
	__builtin_memcpy(r->new_comm, newcomm, sizeof(newcomm));
	bpf_ringbuf_submit(r, wake_flag(sizeof(*r), true));
	count_emit(REC_RENAME, 0);
	return 0;
}

/* ---- connect ------------------------------------------------------------------------------------------- */

#define SA_LEN 110		/* sizeof(struct sockaddr_un); covers sockaddr_in (16) and sockaddr_in6 (28) */

/* Are the 16-byte addresses at a and b (4-byte aligned) equal? */
static __always_inline bool same_addr(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

/*
 * One program, at the syscall's exit: the syscall's arguments are still in the thread's saved user registers
 * (x86-64: si = uservaddr, dx = addrlen, the values the entry tracepoint reports; ia32 and x32 syscalls fire
 * no syscalls tracepoint), so nothing is carried from the entry and an untracked connect runs one program,
 * not two. A tracked connect costs one sockaddr read (a fixed cost, whatever its size: one read of up to
 * SA_LEN bytes serves every family), one task-storage lookup (a hash lookup on a thread's first connect), an
 * LPM lookup for an inet address other than the thread's last one, and one lookup of the per-CPU counters.
 * tracked_connect is that path; its locals are set up only once the process is known to be tracked.
 */
static __always_inline void tracked_connect(struct syscall_exit_args *ctx, struct counters *c, __u32 tgid)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 start = leader_start(task);
	__u64 buf[14] = {};	/* the sockaddr is read to buf + 2, so that a unix path is 4-byte aligned */
	__u8 *sa = (__u8 *)buf + 2;
	struct endpoint_key key = {};
	struct endpoint_value *ep;
	struct thread_proc *tp;
	struct proc_info *p;
	struct pt_regs *regs;
	struct rec_connect *r;
	__u32 size;
	__u16 family;
	long n;

	tp = bpf_task_storage_get(&thread_procs, task, 0, 0);
	if (tp && same_process(&tp->proc, start)) {
		p = &tp->proc;
	} else {
		p = bpf_map_lookup_elem(&tracked, &tgid);
		if (!p)
			return;
		if (!same_process(p, start)) {
			stop_tracking(tgid);
			return;
		}
		tp = bpf_task_storage_get(&thread_procs, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (tp) {
			tp->proc = *p;
			tp->last_state = LAST_NONE;
		}
	}
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	n = regs->dx;		/* addrlen */
	if (n > SA_LEN)
		n = SA_LEN;
	if (n < 2 || bpf_probe_read_user(sa, n & 127, (const void *)regs->si))
		goto read_error;
	family = sa[0] | (sa[1] << 8);
	if (family == AF_INET) {
		if (n < 8)
			goto read_error;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &sa[4], 4);
	} else if (family == AF_INET6) {
		if (n < 24)
			goto read_error;
		__builtin_memcpy(key.addr, &sa[8], 16);
	} else if (family == AF_UNIX) {
		if (only_endpoints)
			goto filtered;
	} else {
		return;
	}
	ep = NULL;
	if (family != AF_UNIX) {
		if (tp && tp->last_state != LAST_NONE && same_addr(tp->last_addr, key.addr)) {
			if (tp->last_state == LAST_ENDPOINT)
				ep = (struct endpoint_value *)tp->last_endpoint;
		} else {
			key.prefixlen = 128;
			ep = bpf_map_lookup_elem(&endpoints, &key);
			if (tp) {
				__builtin_memcpy(tp->last_addr, key.addr, sizeof(tp->last_addr));
				tp->last_state = ep ? LAST_ENDPOINT : LAST_NO_ENDPOINT;
				if (ep)
					__builtin_memcpy(tp->last_endpoint, ep->name, sizeof(tp->last_endpoint));
			}
		}
		if (!ep && only_endpoints)
			goto filtered;
	}
	c->kind[REC_CONNECT].tracked++;
	if (family == AF_UNIX) {
		size = sizeof(*r);
		r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	} else {
		size = __builtin_offsetof(struct rec_connect, path);
		r = bpf_ringbuf_reserve(&events, __builtin_offsetof(struct rec_connect, path), 0);
	}
	if (!r) {
		c->kind[REC_CONNECT].lost++;
		return;
	}
	fill_header(r, REC_CONNECT, task, tgid, p);
	r->family = family;
	r->port = (sa[2] << 8) | sa[3];
	r->ret = ctx->ret;
	r->path_len = 0;
	if (family == AF_INET) {
		__builtin_memcpy(r->addr, &sa[4], 4);
		__builtin_memset(&r->addr[4], 0, 12);
	} else if (family == AF_INET6) {
		__builtin_memcpy(r->addr, key.addr, 16);
	} else {
		r->port = 0;
		r->path_len = n - 2;
		__builtin_memset(r->addr, 0, sizeof(r->addr));
		/* bytes past addrlen are still the zeros buf started with */
		__builtin_memcpy(r->path, (__u8 *)buf + 4, sizeof(r->path));
	}
	if (ep)
		__builtin_memcpy(r->endpoint, ep->name, sizeof(r->endpoint));
	else
		__builtin_memset(r->endpoint, 0, sizeof(r->endpoint));
	bpf_ringbuf_submit(r, wake_flag(size, true));
	c->kind[REC_CONNECT].emitted++;
	return;
filtered:
	c->filtered++;
	return;
read_error:
	c->read_errors++;
}

SEC("tp/syscalls/sys_exit_connect")
int handle_connect_exit(struct syscall_exit_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct counters *c = cnt();

	if (!c)
		return 0;
	c->kind[REC_CONNECT].seen++;
	if (maybe_tracked(tgid))
		tracked_connect(ctx, c, tgid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
