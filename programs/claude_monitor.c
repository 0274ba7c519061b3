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
#define SESSION_LEN 40		/* CLAUDE_CODE_SESSION_ID: a UUID (36) */
#define TRACEPARENT_LEN 56	/* W3C traceparent, version 00: 55 characters */
#define CWD_LEN 256		/* path components of the working directory, leaf first */
#define CWD_MAX_DEPTH 32
#define ENV_CHUNK 192		/* environment bytes read per step (a longer variable takes several) */
#define ENV_MAX_STEPS 512	/* bounds of the environment scan */
#define ENV_MAX_BYTES 65536
#define ENV_BULK 16384		/* an environment up to this size is read in one copy and scanned in place */
#define ENV_SCAN_WORDS 8	/* words a scan step looks at for a variable's end */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define IPPROTO_TCP 6
#define EINPROGRESS 115

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
	REC_CONNECT_RESULT = 6,
	REC_FILE = 7,
	REC_DNS = 8,
	REC_TLS = 9,
	REC_KINDS = 16,		/* size of the per-kind counters: room for more kinds */
};

/* Bits of a record's `flags`. */
enum rec_flags {
	RF_SEEN_AT_START = 1,	/* the process was already running when the monitor started */
	RF_NEW_ROOT = 2,	/* this record started tracking a new Claude process tree */
	RF_THREAD = 4,		/* rename: a thread other than the main one named itself */
};

/* Who started a tracked process (`origin`), decided at exec from the environment, inherited at fork. */
enum origin {
	ORIGIN_UNKNOWN = 0,	/* seen at start: its environment was not read */
	ORIGIN_CLAUDE = 1,	/* Claude Code itself and its own helpers */
	ORIGIN_TOOL = 2,	/* a tool call: CLAUDE_CODE_SESSION_ID and CLAUDE_CODE_CHILD_SESSION, no project dir */
	ORIGIN_HOOK = 3,	/* a hook: both, and CLAUDE_PROJECT_DIR */
	ORIGIN_MCP = 4,		/* an MCP server: CLAUDE_CODE_SESSION_ID and CLAUDE_PROJECT_DIR only */
};

/* Bits of an exec record's `env`: which allowlisted variables the new image has (only the values of
 * CLAUDE_CODE_SESSION_ID, TRACEPARENT and CLAUDE_PID are read; the others count by name alone). */
enum env_flags {
	ENV_SESSION_ID = 1,		/* CLAUDE_CODE_SESSION_ID */
	ENV_CLAUDECODE = 2,		/* CLAUDECODE */
	ENV_CLAUDE_PID = 4,		/* CLAUDE_PID */
	ENV_CHILD_SESSION = 8,		/* CLAUDE_CODE_CHILD_SESSION */
	ENV_TRACEPARENT = 16,		/* TRACEPARENT */
	ENV_PROJECT_DIR = 32,		/* CLAUDE_PROJECT_DIR (name only) */
	ENV_TRUNCATED = 64,		/* the scan stopped at its bounds before the end of the environment */
};

/* Outcome of a TCP handshake, from the socket's state change and sk_err (`result` of connect_result). */
enum conn_result {
	CONN_ESTABLISHED = 0,
	CONN_FAILED = 1,	/* the handshake ended in CLOSE; `error` says why (ECONNREFUSED, ETIMEDOUT, ...) */
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

/* What a tracked process inherits down its tree (a fork copies it; an exec may change it). */
struct attribution {
	enum origin origin;
	__u32 pad;
	char session_id[SESSION_LEN];		/* CLAUDE_CODE_SESSION_ID of the process or its nearest ancestor */
	char traceparent[TRACEPARENT_LEN];	/* TRACEPARENT, likewise */
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
	char comm[COMM_LEN];                                                                                  \
	__u64 start;		/* start_boottime of the process, ns: with pid and boot id, exec_id */        \
	__u64 parent_start;	/* the real parent's (parent_exec_id) */                                      \
	__u64 root_start;	/* the root's (root_exec_id); 10 ms precision for a root seen at start */     \
	__u64 cgroup_id;	/* cgroup v2 id (kernfs inode number) */                                      \
	__u32 euid;                                                                                           \
	__u32 auid;		/* login uid; (u32)-1 when unset */                                           \
	__u32 tty;		/* controlling terminal, (major << 20) | minor; 0 for none */                 \
	__u32 hpad;                                                                                           \
	struct attribution attr;

struct rec_header {
	REC_HEADER
};

struct rec_exec {
	REC_HEADER
	enum match_kind match;
	__u32 argc;		/* arguments recorded in argv */
	__u32 argv_len;		/* bytes of argv sent */
	__u32 argv_truncated;	/* more arguments or bytes existed than the limits allow */
	__u32 env;		/* enum env_flags */
	__u32 claude_pid;	/* CLAUDE_PID, 0 when unset */
	__u32 cwd_len;		/* bytes of cwd */
	__u32 cwd_truncated;	/* deeper or longer than cwd holds */
	char cwd[CWD_LEN];	/* the working directory's components leaf first, each NUL-terminated */
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
	__u64 conn_id;		/* nonzero for a TCP connect whose handshake started: its connect_result has it */
	__u16 family;		/* AF_INET, AF_INET6 or AF_UNIX */
	__u16 port;		/* host byte order */
	__s32 ret;		/* 0 or -errno from the syscall's exit */
	__u32 path_len;		/* bytes of path (unix; a leading NUL marks an abstract socket) */
	__u8 addr[16];		/* inet: 4 bytes, inet6: 16 bytes, network order */
	char endpoint[ENDPOINT_LEN];	/* name of the matching endpoint CIDR, or empty */
	__u8 path[UNIX_PATH_LEN];	/* bytes, not a C string: abstract names start with NUL; inet records
					 * are sent without it (decoders zero-fill short records) */
};

struct rec_connect_result {
	REC_HEADER		/* of the thread that connected, as at its connect */
	__u64 conn_id;
	__u64 latency_ns;	/* from the SYN to the handshake's end */
	enum conn_result result;
	__u32 error;		/* sk_err when the handshake failed (errno) */
};

struct rec_rename {
	REC_HEADER
	enum match_kind match;	/* MATCH_RENAME when this rename started tracking */
	__u32 pad;
	char old_comm[COMM_LEN];
	char new_comm[COMM_LEN];
};

#include "claude_files.h"	/* file, dns and tls records */

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
	struct rec_connect_result connect_result[0];
	struct rec_file file[0];
	struct rec_dns dns[0];
	struct rec_tls tls[0];
	enum file_op file_op;
	enum file_flags file_flags;
	enum sock_proto sock_proto;
	enum watch_where watch_where;
	enum rec_flags flags;
	enum env_flags env_flags;
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
	__u64 file_summarised;	/* file events folded into a repeat count instead of a record */
};

/* A tracked process, keyed by tgid. (tgid, start) is the identity: a reused pid never matches. */
struct proc_info {
	__u64 start;		/* group leader's start_boottime, ns */
	__u64 root_start;	/* the root's start (coarse for a root seeded from /proc) */
	__u32 root_pid;
	__u32 depth;
	__u32 flags;		/* PI_* */
	__u32 pad;
	struct attribution attr;
};

/* A thread's connect state, made at its first tracked connect: a copy of its process's tracked entry (its
 * later connects need no hash lookup: a live process's entry does not change), and the endpoint lookup of
 * its last inet connect (a thread that reconnects to the same address needs no LPM lookup: `endpoints` is
 * filled before the programs attach and not changed while they run). */
struct thread_proc {
	struct proc_info proc;
	__u64 conn_id;		/* of the handshake this thread's connect started, until the syscall's exit */
	__u64 conn_sk;		/* its socket */
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
	/* what the environment scan found (only allowlisted values are ever copied here) */
	char session_id[SESSION_LEN];
	char traceparent[TRACEPARENT_LEN];
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

/* The environment as one copy (see read_env_bulk); the slack after it bounds the word loads of a scan step.
 * It holds every variable's value while a scan runs: the map is write-only from user space (no syscall can
 * read it) and the copy is zeroed before the program returns. */
struct env_bulk {
	/* the scan's position lives here, not in the bpf_loop context on the stack: the verifier tracks no map
	 * value's contents, so the callback is verified once instead of once per distinct position */
	__u32 len;		/* bytes of the environment in text */
	__u32 pos;		/* offset of the next variable (or of the rest of a long one) */
	__u32 var_len;		/* bytes of the current variable before pos, while its NUL is still ahead */
	__u32 steps;		/* the steps read_env would take for the variables scanned so far */
	__u32 bad;		/* the copy is not a sequence of NUL-terminated strings */
	__u32 pad;
	char text[ENV_BULK + 8 * ENV_SCAN_WORDS + 64];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_WRONLY);
	__type(key, __u32);
	__type(value, struct env_bulk);
} env_bulk SEC(".maps");

#define WAKE_CHECK_SHIFT 6	/* a CPU checks the ring's fill after queuing 1/64 of wakeup_bytes (see wake_flag) */

/* Bytes of records this CPU queued since it last checked the ring's fill. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} unchecked_bytes SEC(".maps");

/* Progress of a handshake relative to the connect(2) that started it. */
enum conn_phase {
	PH_SYSCALL = 0,		/* the connect syscall has not returned yet */
	PH_WAITING = 1,		/* it returned (its record is sent); the outcome is sent when it comes */
	PH_DONE = 2,		/* the outcome came first: the syscall's exit sends it after the connect record */
};

/* A TCP handshake started by a tracked thread, keyed by its socket's address. */
struct pending_conn {
	struct rec_connect_result rec;	/* header as at the connect; the outcome is filled in at the end */
	__u64 syn_ts;
	__u64 phase;		/* enum conn_phase, changed with compare-and-swap (64-bit: clang 14 has no
				 * 32-bit BPF atomics before -mcpu=v3) */
	__u64 simopen;		/* went through SYN_RECV (simultaneous open) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct pending_conn);
} pending_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pending_conn);
} conn_scratch SEC(".maps");

/* Entries in pending_conns (an upper bound: an LRU eviction is not subtracted) and simultaneous opens in
 * progress; while they are 0, a socket state change needs no lookup. */
/* Always zero, but a map value to the verifier, which cannot know it. Before Linux 6.7 the verifier checks a
 * bpf_loop callback once, with the state of its first call, and removes the branches that call does not take:
 * a callback counter that starts at a constant 0 loses its bounds (on 6.1 the environment scan ran past its
 * 64 KiB bound and read the middle of a long value as a variable). A counter starting from this one keeps
 * both ways of each of its branches. */
__u32 unknown_zero = 0;

__u64 pending_count = 0;
__u64 simopen_count = 0;

static __always_inline struct counters *cnt(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

/* bpf_probe_read_user_str as documented: the length copied with its NUL, so 1 for an empty string. Linux 6.1
 * returns 0 there (having copied the NUL), which read as a failure lost an empty argument and every one after
 * it; a negative value is still a fault. */
static __always_inline long read_user_str(void *dst, __u32 size, const void *src)
{
	long n = bpf_probe_read_user_str(dst, size, src);

	return n == 0 ? 1 : n;
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

/* Track tgid as described by info; false when the tracked map is full. */
static __always_inline bool track(__u32 tgid, const struct proc_info *info)
{
	set_pid_byte(tgid, 1);
	if (bpf_map_update_elem(&tracked, &tgid, info, BPF_ANY)) {
		struct counters *c = cnt();

		set_pid_byte(tgid, 0);
		if (c)
			c->tracked_full++;
		return false;
	}
	return true;
}

/* Start a new Claude tree at tgid; returns its entry or NULL. */
static __always_inline struct proc_info *start_root(__u32 tgid, __u64 start)
{
	struct proc_info info = { .start = start, .root_start = start, .root_pid = tgid };

	info.attr.origin = ORIGIN_CLAUDE;
	if (!track(tgid, &info))
		return NULL;
	return bpf_map_lookup_elem(&tracked, &tgid);
}

/*
 * The common header of an event of `task` (a thread of process tgid, described by p): who (ids, names,
 * credentials, terminal, cgroup), the identities of the process, its parent and its root (start times: user
 * space composes exec_id from boot id, pid and start), and the attribution the tree inherited. Task pointers
 * are BTF-typed, so every field is a plain load.
 */
static __always_inline void fill_header(void *rec, __u32 type, struct task_struct *task, __u32 tgid,
					const struct proc_info *p)
{
	struct rec_header *h = rec;
	struct task_struct *parent = task->real_parent;
	struct tty_struct *tty = task->signal->tty;

	h->type = type;
	h->flags = (p->flags & PI_SEEN_AT_START) ? RF_SEEN_AT_START : 0;
	h->ts = bpf_ktime_get_ns();
	h->pid = tgid;
	h->tid = task->pid;
	h->ppid = parent->tgid;
	h->uid = task->real_cred->uid.val;
	h->root_pid = p->root_pid;
	h->depth = p->depth;
	__builtin_memcpy(h->comm, task->comm, sizeof(h->comm));
	h->start = task->group_leader->start_boottime;
	h->parent_start = parent->group_leader->start_boottime;
	h->root_start = p->root_start;
	h->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	h->euid = task->cred->euid.val;
	if (bpf_core_field_exists(task->loginuid))
		h->auid = task->loginuid.val;
	else
		h->auid = (__u32)-1;
	h->tty = tty ? ((__u32)tty->driver->major << 20) | (__u32)(tty->driver->minor_start + tty->index) : 0;
	h->hpad = 0;
	h->attr = p->attr;
}

/* Reserve a record of kind `kind` in the ring; a failure is counted as lost. `size` must be a constant. */
static __always_inline void *reserve_record(__u32 kind, __u32 size)
{
	void *r = bpf_ringbuf_reserve(&events, size, 0);

	if (!r)
		count_emit(kind, -1);
	return r;
}

/* Submit a reserved record (waking the consumer when the ring crossed wakeup_bytes) and count it. */
static __always_inline void submit_record(void *r, __u32 kind, __u32 size)
{
	bpf_ringbuf_submit(r, wake_flag(size, true));
	count_emit(kind, 0);
}

/* The tracked entry of the current process (task and tgid out), or NULL; the cheap test comes first. */
static __always_inline struct proc_info *current_tracked(struct task_struct **task, __u32 *tgid)
{
	*tgid = bpf_get_current_pid_tgid() >> 32;
	if (!maybe_tracked(*tgid))
		return NULL;
	*task = bpf_get_current_task_btf();
	return lookup_tracked(*tgid, leader_start(*task));
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
	n = read_user_str(&s->rec.argv[a->off & (ARGV_BUF - 1)], room, (const void *)a->p);
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

/* Eight characters as the little-endian word they load as, and a mask of a word's first n bytes: names are
 * compared a word at a time (a byte loop made the verifier walk hundreds of thousands of instructions). */
#define W8(a, b, c, d, e, f, g, h)                                                                            \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 |            \
	 (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)
#define FIRST(n) ((1ULL << (8 * (n))) - 1)

struct env_ctx {
	unsigned long p;	/* next user address */
	unsigned long end;	/* mm->env_end */
	__u32 bytes;		/* scanned so far */
	__u32 cont;		/* the previous step stopped inside a variable longer than ENV_CHUNK */
	__u32 flags;		/* ENV_* */
	__u32 claude_pid;
};

/*
 * Compare the variable whose first bytes are at buf with the allowlist; only an allowlisted variable's value
 * is copied out. buf holds the variable up to its NUL at least (bytes after it may be anything: a name that
 * ends early has its NUL inside the compared words, so it cannot match). Returns 1 to stop the scan.
 */
static __always_inline long env_var(const __u64 *buf, struct env_ctx *e)
{
	__u64 w = buf[0];
	__u32 zero = 0, v = 0;
	struct exec_scratch *s;

	if (w == W8('T', 'R', 'A', 'C', 'E', 'P', 'A', 'R')) {
		if ((buf[1] & FIRST(4)) != W8('E', 'N', 'T', '=', 0, 0, 0, 0))
			return 0;
		s = bpf_map_lookup_elem(&exec_scratch, &zero);
		if (!s)
			return 1;
		e->flags |= ENV_TRACEPARENT;
		/* a string copy: stops at the value's NUL, so bytes left by an earlier TRACEPARENT stay */
		bpf_probe_read_kernel_str(s->traceparent, TRACEPARENT_LEN, (char *)buf + 12);
	} else if (w == W8('C', 'L', 'A', 'U', 'D', 'E', '_', 'C')) {
		if (buf[1] == W8('O', 'D', 'E', '_', 'S', 'E', 'S', 'S') &&
		    (buf[2] & FIRST(7)) == W8('I', 'O', 'N', '_', 'I', 'D', '=', 0)) {
			s = bpf_map_lookup_elem(&exec_scratch, &zero);
			if (!s)
				return 1;
			e->flags |= ENV_SESSION_ID;
			bpf_probe_read_kernel_str(s->session_id, SESSION_LEN, (char *)buf + 23);
		} else if (buf[1] == W8('O', 'D', 'E', '_', 'C', 'H', 'I', 'L') &&
			   buf[2] == W8('D', '_', 'S', 'E', 'S', 'S', 'I', 'O') &&
			   (buf[3] & FIRST(2)) == W8('N', '=', 0, 0, 0, 0, 0, 0)) {
			e->flags |= ENV_CHILD_SESSION;
		}
	} else if (w == W8('C', 'L', 'A', 'U', 'D', 'E', 'C', 'O')) {
		if ((buf[1] & FIRST(3)) == W8('D', 'E', '=', 0, 0, 0, 0, 0))
			e->flags |= ENV_CLAUDECODE;
	} else if (w == W8('C', 'L', 'A', 'U', 'D', 'E', '_', 'P')) {
		if (buf[1] == W8('R', 'O', 'J', 'E', 'C', 'T', '_', 'D') &&
		    (buf[2] & FIRST(3)) == W8('I', 'R', '=', 0, 0, 0, 0, 0)) {
			e->flags |= ENV_PROJECT_DIR;	/* the name alone: a path, but not on the allowlist */
		} else if ((buf[1] & FIRST(3)) == W8('I', 'D', '=', 0, 0, 0, 0, 0)) {
			const char *digits = (const char *)buf + 11;

			e->flags |= ENV_CLAUDE_PID;
			for (__u32 j = 0; j < 10; j++) {
				char c = digits[j];

				if (c < '0' || c > '9')
					break;
				v = v * 10 + (c - '0');
			}
			e->claude_pid = v;
		}
	}
	return 0;
}

/*
 * bpf_loop callback: one step of the environment scan. Each step reads one variable (or the next ENV_CHUNK
 * bytes of a long one) into this frame's stack and looks at its name (env_var). Returns 1 to stop.
 */
static long read_env(__u32 i, struct env_ctx *e)
{
	__u64 buf[ENV_CHUNK / 8];
	long n;

	if (e->p >= e->end)
		return 1;
	if (e->bytes >= ENV_MAX_BYTES) {
		e->flags |= ENV_TRUNCATED;
		return 1;
	}
	n = read_user_str(buf, sizeof(buf), (const void *)e->p);
	if (n <= 0)
		return 1;
	if (n == ENV_CHUNK) {
		/* longer than the chunk: go on at the byte the copy's terminating NUL replaced */
		e->p += n - 1;
		e->bytes += n - 1;
		if (e->cont)
			return 0;
		e->cont = 1;
	} else {
		e->p += n;
		e->bytes += n;
		if (e->cont) {
			e->cont = 0;
			return 0;
		}
	}
	return env_var(buf, e);
}

/* Bit 7 of each byte of w that is zero, and no other bit (exact: no carry crosses a byte). */
static __always_inline __u64 zero_bytes(__u64 w)
{
	const __u64 low7 = 0x7f7f7f7f7f7f7f7fULL;

	return ~(((w & low7) + low7) | w | low7);
}

/* Index of the lowest byte flagged in a nonzero zero_bytes() mask. */
static __always_inline __u32 first_flagged(__u64 m)
{
	return (((m & -m) >> 7) * 0x0001020304050607ULL) >> 56;
}

/* bpf_loop callback: look at the variable at pos in the bulk copy and find its end, ENV_SCAN_WORDS words at
 * a time (a longer variable takes more steps). Returns 1 to stop. */
static long scan_env(__u32 i, struct env_ctx *e)
{
	__u32 zero = 0, pos, k;
	struct env_bulk *b;
	const char *v;
	__u64 m = 0;

	b = bpf_map_lookup_elem(&env_bulk, &zero);
	if (!b)
		return 1;
	pos = b->pos;
	if (pos >= b->len)
		return 1;
	v = b->text + (pos & (ENV_BULK - 1));
	if (b->var_len == 0 && env_var((const __u64 *)v, e))
		return 1;
	for (k = 0; k < ENV_SCAN_WORDS; k++) {
		m = zero_bytes(*(const __u64 *)(v + 8 * k));
		if (m)
			break;
	}
	if (!m) {
		b->pos = pos + 8 * ENV_SCAN_WORDS;
		b->var_len += 8 * ENV_SCAN_WORDS;
		return 0;
	}
	k = 8 * k + first_flagged(m);	/* the NUL's offset from v */
	b->var_len += k;
	b->steps += b->var_len / (ENV_CHUNK - 1) + 1;
	b->var_len = 0;
	b->pos = pos + k + 1;
	if (b->pos > b->len) {
		b->bad = 1;
		return 1;
	}
	return 0;
}

/*
 * The environment scan of read_env done on one copy of the whole environment: one user read instead of one
 * per variable, and word-at-a-time ends. The result is read_env's: the same variables looked at in the same
 * order; false when that cannot be promised (an environment larger than ENV_BULK, one read_env would stop
 * early in, or a failed copy), and then the caller runs read_env.
 */
static __always_inline bool read_env_bulk(struct env_ctx *e)
{
	unsigned long len = e->end - e->p;
	__u32 zero = 0;
	struct env_bulk *b;

	if (e->p >= e->end || len > ENV_BULK)
		return e->p >= e->end;
	b = bpf_map_lookup_elem(&env_bulk, &zero);
	if (!b || bpf_probe_read_user(b->text, len, (const void *)e->p))
		return false;
	b->len = len;
	b->pos = 0;
	b->var_len = 0;
	b->steps = 0;
	b->bad = 0;
	bpf_loop(ENV_BULK, scan_env, e, 0);
	/* no value off the allowlist outlives the scan: a kernel read of address 0 fails and zeroes its buffer */
	bpf_probe_read_kernel(b->text, len, NULL);
	if (b->bad || b->pos != b->len || b->steps > ENV_MAX_STEPS)
		return false;
	e->p = e->end;
	return true;
}

struct cwd_ctx {
	__u64 dentry;		/* current component (kernel pointers as numbers: read with probe reads) */
	__u64 mnt;		/* its struct mount */
	__u64 root_dentry;	/* the process's root directory: the walk stops there */
	__u64 root_mnt;
	__u32 off;		/* bytes of s->rec.cwd written */
	__u32 done;		/* reached the root */
	__u32 truncated;
};

/* bpf_loop callback: append the name of the current component and step to its parent, crossing mount
 * points; returns 1 at the root. */
static long read_cwd_step(__u32 i, struct cwd_ctx *c)
{
	struct dentry *d = (struct dentry *)c->dentry;
	struct mount *m = (struct mount *)c->mnt;
	struct dentry *parent;
	const unsigned char *name;
	__u32 zero = 0, off;
	struct exec_scratch *s;
	long n;

	if (c->dentry == c->root_dentry && c->mnt == c->root_mnt) {
		c->done = 1;
		return 1;
	}
	if (d == BPF_CORE_READ(m, mnt.mnt_root)) {
		struct mount *up = BPF_CORE_READ(m, mnt_parent);

		if (up == m) {
			c->done = 1;
			return 1;
		}
		c->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = (__u64)up;
		return 0;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (parent == d) {
		c->done = 1;
		return 1;
	}
	s = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!s)
		return 1;
	off = c->off;
	if (off >= CWD_LEN) {
		c->truncated = 1;
		return 1;
	}
	off &= CWD_LEN - 1;
	name = BPF_CORE_READ(d, d_name.name);
	n = bpf_probe_read_kernel_str(&s->rec.cwd[off], CWD_LEN - off, name);
	if (n <= 0)
		return 1;
	if (off + n >= CWD_LEN) {
		c->truncated = 1;	/* the buffer is full: a cut name is not sent */
		return 1;
	}
	c->off = off + n;
	c->dentry = (__u64)parent;
	return 0;
}

/* The working directory of task as path components, leaf first (user space joins them in reverse): the
 * kernel's d_path is not callable from tracepoints, so this walks d_parent and the mount tree itself. */
static __always_inline void read_cwd(struct exec_scratch *s, struct task_struct *task)
{
	struct fs_struct *fs = task->fs;
	struct cwd_ctx c = {};
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);

	c.dentry = (__u64)fs->pwd.dentry;
	c.mnt = (__u64)fs->pwd.mnt - mnt_off;
	c.root_dentry = (__u64)fs->root.dentry;
	c.root_mnt = (__u64)fs->root.mnt - mnt_off;
	bpf_loop(CWD_MAX_DEPTH, read_cwd_step, &c, 0);
	s->rec.cwd_len = c.off;
	s->rec.cwd_truncated = c.truncated || !c.done;
}

/*
 * At exec of a tracked process: scan the new image's environment for the allowlist and update the
 * process's attribution. A tool call, hook or MCP server is recognised by its variables (see enum origin);
 * otherwise the origin inherited at fork stays. A new Claude root keeps ORIGIN_CLAUDE and takes no session
 * id from its environment (that would be the session of whatever started it). The first session id seen in
 * a tree is also given to its root, whose own environment does not have it.
 */
static __always_inline void read_env_attribution(struct exec_scratch *s, struct task_struct *task,
						 struct proc_info *p, bool new_root)
{
	struct env_ctx e = {};
	struct proc_info *root;
	__u32 f;

	__builtin_memset(s->session_id, 0, SESSION_LEN);
	__builtin_memset(s->traceparent, 0, TRACEPARENT_LEN);
	e.p = task->mm->env_start;
	e.end = task->mm->env_end;
	if (!read_env_bulk(&e)) {
		__builtin_memset(s->session_id, 0, SESSION_LEN);
		__builtin_memset(s->traceparent, 0, TRACEPARENT_LEN);
		e = (struct env_ctx){ .p = task->mm->env_start, .end = task->mm->env_end, .bytes = unknown_zero,
				      .cont = unknown_zero };
		bpf_loop(ENV_MAX_STEPS, read_env, &e, 0);
	}
	if (e.p < e.end && !(e.flags & ENV_TRUNCATED) && e.cont == 0 && e.bytes > 0)
		e.flags |= ENV_TRUNCATED;	/* the step bound ended the scan */
	f = e.flags;
	s->rec.env = f;
	s->rec.claude_pid = e.claude_pid;
	if (f & ENV_TRACEPARENT)
		__builtin_memcpy(p->attr.traceparent, s->traceparent, TRACEPARENT_LEN);
	if (new_root || !(f & ENV_SESSION_ID))
		return;
	__builtin_memcpy(p->attr.session_id, s->session_id, SESSION_LEN);
	if (f & ENV_CHILD_SESSION)
		p->attr.origin = (f & ENV_PROJECT_DIR) ? ORIGIN_HOOK : ORIGIN_TOOL;
	else if (f & ENV_PROJECT_DIR)
		p->attr.origin = ORIGIN_MCP;
	if (p->root_pid == s->rec.pid)
		return;
	root = bpf_map_lookup_elem(&tracked, &p->root_pid);
	if (root && root->start == p->root_start && root->attr.session_id[0] == 0)
		__builtin_memcpy(root->attr.session_id, s->session_id, SESSION_LEN);
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
	/* the comm rules only decide for a process not tracked yet */
	rule = p ? NULL : bpf_map_lookup_elem(&comm_rules, s->rec.comm);
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
		p = start_root(tgid, leader_start(task));
		if (!p)
			return 0;
	} else {
		/* the thread's connect cache holds the entry as it was before this exec */
		bpf_task_storage_delete(&thread_procs, task);
	}
	count_tracked(REC_EXEC);
	s->rec.pid = tgid;
	read_env_attribution(s, task, p, match != MATCH_INHERITED);
	read_cwd(s, task);
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
	struct proc_info *p, info;
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
	/* the child inherits the root and the attribution; seen from its birth, not PI_SEEN_AT_START */
	info = *p;
	info.start = child->start_boottime;
	info.depth = p->depth + 1;
	info.flags = 0;
	if (!track(child_tgid, &info))
		return 0;
	r = reserve_record(REC_FORK, sizeof(*r));
	if (!r)
		return 0;
	fill_header(r, REC_FORK, task, tgid, p);
	r->child_pid = child_tgid;
	r->pad = 0;
	submit_record(r, REC_FORK, sizeof(*r));
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
	r = reserve_record(REC_EXIT, sizeof(*r));
	if (r) {
		fill_header(r, REC_EXIT, task, tgid, p);
		/* the process's name (its main thread's), not that of the thread that happened to exit last */
		__builtin_memcpy(r->comm, task->group_leader->comm, sizeof(r->comm));
		code = task->exit_code;
		r->exit_code = (code >> 8) & 0xff;
		r->signal = code & 0x7f;
		r->core_dumped = (code & 0x80) ? 1 : 0;
		r->pad = 0;
		r->duration_ns = bpf_ktime_get_boot_ns() - leader_start(task);
		submit_record(r, REC_EXIT, sizeof(*r));
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
		p = start_root(tgid, leader_start(task));
		if (!p)
			return 0;
		match = MATCH_RENAME;
	}
	count_tracked(REC_RENAME);
	r = reserve_record(REC_RENAME, sizeof(*r));
	if (!r)
		return 0;
	fill_header(r, REC_RENAME, task, tgid, p);
	if (match)
		r->flags |= RF_NEW_ROOT;
	if (task->pid != tgid)
		r->flags |= RF_THREAD;
	r->match = match;
	r->pad = 0;
	__builtin_memcpy(r->old_comm, task->comm, sizeof(r->old_comm));	/* still the old name here */
	__builtin_memcpy(r->new_comm, newcomm, sizeof(newcomm));
	submit_record(r, REC_RENAME, sizeof(*r));
	return 0;
}

#define CLAUDE_FILES_PROGRAMS
#include "claude_files.h"

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
/* Send a finished handshake's connect_result and forget it. */
static __always_inline void emit_result(struct pending_conn *pc, __u64 key)
{
	struct rec_connect_result *r;

	count_tracked(REC_CONNECT_RESULT);
	r = reserve_record(REC_CONNECT_RESULT, sizeof(*r));
	if (r) {
		__builtin_memcpy(r, &pc->rec, sizeof(*r));
		submit_record(r, REC_CONNECT_RESULT, sizeof(*r));
	}
	if (pc->simopen)
		__sync_fetch_and_add(&simopen_count, -1);
	if (bpf_map_delete_elem(&pending_conns, &key) == 0)
		__sync_fetch_and_add(&pending_count, -1);
}

/* At the exit of the connect that started handshake conn_id on socket key: send its outcome if it came
 * during the syscall, else leave it to the state change; `keep` is false when the connect was not recorded
 * (its outcome is then dropped too). */
static __always_inline void connect_done(__u64 key, __u64 conn_id, bool keep)
{
	struct pending_conn *pc = bpf_map_lookup_elem(&pending_conns, &key);

	if (!pc || pc->rec.conn_id != conn_id)
		return;
	if (!keep) {
		if (pc->simopen)
			__sync_fetch_and_add(&simopen_count, -1);
		if (bpf_map_delete_elem(&pending_conns, &key) == 0)
			__sync_fetch_and_add(&pending_count, -1);
		return;
	}
	if (__sync_val_compare_and_swap(&pc->phase, PH_SYSCALL, PH_WAITING) == PH_DONE)
		emit_result(pc, key);
}

static __always_inline bool tracked_connect(struct syscall_exit_args *ctx, struct counters *c, __u32 tgid,
					    __u64 *conn_id, __u64 *conn_sk)
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
	if (tp) {
		*conn_id = tp->conn_id;
		*conn_sk = tp->conn_sk;
		tp->conn_id = 0;
	}
	/* the cached copy serves once the entry is final; until a session id is known, the root's entry may
	 * still get one from a child */
	if (tp && same_process(&tp->proc, start) && tp->proc.attr.session_id[0]) {
		p = &tp->proc;
	} else {
		p = bpf_map_lookup_elem(&tracked, &tgid);
		if (!p)
			return false;
		if (!same_process(p, start)) {
			stop_tracking(tgid);
			return false;
		}
		if (!tp)
			tp = bpf_task_storage_get(&thread_procs, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (tp && !same_process(&tp->proc, start))
			tp->last_state = LAST_NONE;
		if (tp)
			tp->proc = *p;
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
		return false;
	}
	if (family != AF_UNIX)
		watch_connect(task, tgid, regs->di, family, (sa[2] << 8) | sa[3], key.addr, ctx->ret);
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
		return false;
	}
	fill_header(r, REC_CONNECT, task, tgid, p);
	r->conn_id = *conn_id;
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
	return true;
filtered:
	c->filtered++;
	return false;
read_error:
	c->read_errors++;
	return false;
}

SEC("tp/syscalls/sys_exit_connect")
int handle_connect_exit(struct syscall_exit_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct counters *c = cnt();

	if (!c)
		return 0;
	c->kind[REC_CONNECT].seen++;
	if (maybe_tracked(tgid)) {
		__u64 conn_id = 0, conn_sk = 0;
		bool sent = tracked_connect(ctx, c, tgid, &conn_id, &conn_sk);

		if (conn_id)
			connect_done(conn_sk, conn_id, sent);
	}
	return 0;
}

/* ---- connect_result ------------------------------------------------------------------------------------ */

/* A tracked thread's TCP socket entered SYN_SENT (inside its connect): remember the handshake. */
static __always_inline void handshake_start(const struct sock *sk)
{
	struct task_struct *task;
	struct pending_conn *pc;
	struct thread_proc *tp;
	struct proc_info *p;
	__u32 tgid, zero = 0;
	__u64 key = (__u64)sk, now;

	p = current_tracked(&task, &tgid);
	if (!p || sk->sk_protocol != IPPROTO_TCP)
		return;
	pc = bpf_map_lookup_elem(&conn_scratch, &zero);
	if (!pc)
		return;
	fill_header(&pc->rec, REC_CONNECT_RESULT, task, tgid, p);
	now = pc->rec.ts;
	pc->rec.conn_id = (now << 8) | (bpf_get_smp_processor_id() & 0xff);
	pc->rec.latency_ns = 0;
	pc->rec.result = CONN_ESTABLISHED;
	pc->rec.error = 0;
	pc->syn_ts = now;
	pc->phase = PH_SYSCALL;
	pc->simopen = 0;
	if (bpf_map_update_elem(&pending_conns, &key, pc, BPF_ANY))
		return;
	__sync_fetch_and_add(&pending_count, 1);
	tp = bpf_task_storage_get(&thread_procs, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (tp) {
		tp->conn_id = pc->rec.conn_id;
		tp->conn_sk = key;
	}
}

/* The handshake on sk ended (or went to SYN_RECV: a simultaneous open, which ends one state later). */
static __always_inline void handshake_end(const struct sock *sk, int newstate)
{
	__u64 key = (__u64)sk, now;
	struct pending_conn *pc;

	count_seen(REC_CONNECT_RESULT);
	pc = bpf_map_lookup_elem(&pending_conns, &key);
	if (!pc)
		return;
	if (newstate == TCP_SYN_RECV) {
		if (!pc->simopen) {
			pc->simopen = 1;
			__sync_fetch_and_add(&simopen_count, 1);
		}
		return;
	}
	now = bpf_ktime_get_ns();
	pc->rec.ts = now;
	pc->rec.latency_ns = now - pc->syn_ts;
	if (newstate == TCP_ESTABLISHED) {
		pc->rec.result = CONN_ESTABLISHED;
		pc->rec.error = 0;
	} else {
		pc->rec.result = CONN_FAILED;
		pc->rec.error = sk->sk_err;
	}
	if (__sync_val_compare_and_swap(&pc->phase, PH_SYSCALL, PH_DONE) == PH_SYSCALL)
		return;		/* the connect syscall is still running: its exit sends this after its record */
	emit_result(pc, key);
}

/*
 * Every TCP state change on the host comes here. Entering SYN_SENT happens in the connecting thread's
 * connect(2): one byte test for an untracked process. Leaving it (the handshake's end, in softirq) needs a
 * lookup only while a tracked handshake is pending.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_sock_state, const struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_SYN_SENT)
		handshake_start(sk);
	else if ((oldstate == TCP_SYN_SENT && pending_count) || (oldstate == TCP_SYN_RECV && simopen_count))
		handshake_end(sk, newstate);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
