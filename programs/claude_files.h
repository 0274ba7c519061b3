/* SPDX-License-Identifier: GPL-2.0 */
/*
 * claude_files.h: what tracked processes change on disk, which sensitive files they read, and the DNS and TLS
 * bytes that name the hosts they talk to. Included by claude_monitor.c after its tracking helpers
 * (maybe_tracked, lookup_tracked, fill_header, wake_flag, cnt) and before its connect handler, which calls
 * watch_connect().
 *
 * Every program here runs at a syscall's exit (the arguments are still in the thread's saved user registers,
 * as for connect) and returns after one inlined array lookup when the process is not tracked.
 *
 * Paths: the kernel sends what it knows without resolving anything itself: the name the caller passed and
 * the directory it is relative to (the dirfd's or the cwd's dentry chain, leaf first, crossing mounts), or
 * for an open that succeeded (and the f* calls) the opened file's own dentry chain. User space joins them,
 * resolves `.` and `..`, and reverses the chain (see rawbpf/monitor/files.py).
 *
 * Repeated opens for writing of the same file (dev, inode) by the same process within file_summary_ns are
 * folded: the first is sent with count 1, the next ones only bump a counter in `file_recent`; the first one
 * after the window carries their number in `count`, and user space reports a quiet key's remainder when it
 * sweeps the map. Every tracked file event is exactly one of emitted, summarised (counters.file_summarised)
 * or lost.
 *
 * DNS and TLS: a tracked connect to port 53 or 443 (and a sendto/sendmsg to port 53) puts the socket
 * (tgid, fd, struct file) in `sock_watch`; the send and receive calls of a watched socket (write, writev,
 * sendto, sendmsg, sendmmsg, read, readv, recvfrom, recvmsg, recvmmsg) send their bytes (DNS: every call;
 * TLS: the first write only, the ClientHello) for user space to parse, the first iovecs of writev, readv,
 * sendmsg and recvmsg gathered into one capture (of sendmmsg and recvmmsg, each datagram's first). Nothing is parsed here: over TCP a capture is a piece of a stream (a length prefix alone, a
 * message in several reads, two messages in one writev) that user space reassembles per socket.
 */
#ifndef CLAUDE_FILES_H
#define CLAUDE_FILES_H

#define FILE_DATA 4096		/* names and dentry chains of one file record (a power of two) */
#define FILE_MASK (FILE_DATA - 1)
#define USER_PATH 1024		/* bytes of a path argument read from the caller */
#define NAME_READ 256		/* NAME_MAX + 1: one dentry name */
#define WALK_MAX 64		/* dentries (and mount crossings) walked per chain */
#define WATCH_NAME_LEN 32
#define PAYLOAD_MAX 2048	/* bytes of a DNS message or TLS ClientHello sent (a power of two) */
#define MMSG_MAX 4		/* messages of one sendmmsg/recvmmsg looked at */
#define IOV_GATHER 4		/* iovecs of one writev/readv/sendmsg/recvmsg call gathered (glibc's resolver
				 * writes two length-prefixed queries in four) */

#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
#define O_ACCMODE 3
#define O_CREAT 0100
#define O_TRUNC 01000
#define O_APPEND 02000
#define O_WRITING (1 | 2 | O_CREAT | O_TRUNC | O_APPEND)	/* O_WRONLY, O_RDWR and the creating flags */
#define FMODE_CREATED (1U << 20)	/* set on a struct file by the open that created the file */
#define EPERM 1
#define EACCES 13
#ifndef EINPROGRESS
#define EINPROGRESS 115
#endif
#define SOCK_STREAM 1

/* `op` of a file record. */
enum file_op {
	FOP_CREATE = 1,
	FOP_WRITE = 2,
	FOP_TRUNCATE = 3,
	FOP_DELETE = 4,
	FOP_RENAME = 5,
	FOP_MKDIR = 6,
	FOP_RMDIR = 7,
	FOP_CHMOD = 8,
	FOP_CHOWN = 9,
	FOP_LINK = 10,
	FOP_SYMLINK = 11,
	FOP_READ = 12,
};

/* Bits of a file record's `fflags`. */
enum file_flags {
	FF_FILE1 = 1,		/* walk1 is the file itself (name1 unused) */
	FF_CUT1 = 2,		/* walk1 or name1 was cut short (deeper or longer than the buffer) */
	FF_CUT2 = 4,
	FF_SENSITIVE = 8,	/* a read whose path has a watched name (user space checks the glob) */
	FF_WALK1 = 16,		/* walk1 was taken (name1 is relative, or FF_FILE1) */
	FF_WALK2 = 32,
};

/* Which syscall a file program serves; one inlined body per program keeps its own case only. */
enum file_sc {
	SC_OPEN, SC_OPENAT, SC_OPENAT2, SC_CREAT,
	SC_UNLINK, SC_UNLINKAT, SC_RMDIR,
	SC_RENAME, SC_RENAMEAT, SC_RENAMEAT2,
	SC_MKDIR, SC_MKDIRAT,
	SC_CHMOD, SC_FCHMOD, SC_FCHMODAT, SC_FCHMODAT2,
	SC_CHOWN, SC_LCHOWN, SC_FCHOWN, SC_FCHOWNAT,
	SC_LINK, SC_LINKAT, SC_SYMLINK, SC_SYMLINKAT,
	SC_TRUNCATE, SC_FTRUNCATE,
};

/* Values of the `watch_names` map: where a watched name may stand in a read file's path. */
enum watch_where {
	WATCH_LEAF = 1,		/* the file's own name */
	WATCH_DIR = 2,		/* any directory above it */
};

/* What a watched socket carries; `proto` of dns and tls records. */
enum sock_proto {
	SOCK_DNS = 1,
	SOCK_TLS = 2,
};

struct rec_file {
	REC_HEADER
	enum file_op op;
	__s32 ret;		/* 0 or -errno */
	__u32 count;		/* events this record stands for (repeats folded into it) */
	__u32 fflags;		/* enum file_flags */
	__u32 mode;		/* chmod, mkdir, open with O_CREAT */
	__u32 owner_uid;	/* chown: (u32)-1 leaves it */
	__u32 owner_gid;
	__u32 open_flags;
	__u64 ino;		/* the opened file (summarised writes) */
	__u32 dev;
	__u16 name1_len;	/* bytes of data: name1, walk1, name2, walk2, in that order */
	__u16 walk1_len;
	__u16 name2_len;
	__u16 walk2_len;
	__u32 gen;		/* the opened file's inode generation: with dev and ino, one file */
	__u8 data[FILE_DATA];	/* only the used bytes are sent */
};

#define REC_PAYLOAD                                                                                           \
	REC_HEADER                                                                                            \
	enum sock_proto proto;                                                                                \
	__u32 sent;		/* 1: the process sent these bytes, 0: it received them */                    \
	__s32 fd;                                                                                             \
	__u32 sock_type;	/* SOCK_STREAM (DNS over TCP has a length prefix) or SOCK_DGRAM */            \
	__u16 family;                                                                                         \
	__u16 port;		/* the peer's, host order */                                                  \
	__u32 size;		/* bytes of the message */                                                    \
	__u8 addr[16];		/* the peer, IPv6 or IPv4-mapped */                                           \
	__u32 data_len;		/* bytes of data sent (at most PAYLOAD_MAX): the first bytes of `size` */     \
	__u32 sock_ino;		/* the socket's inode number: one stream, whatever fd names it */              \
	__u8 data[PAYLOAD_MAX];

struct rec_dns {
	REC_PAYLOAD
};

struct rec_tls {
	REC_PAYLOAD
};

struct file_recent_key {
	__u32 tgid;
	__u32 op;
	__u64 ino;
	__u32 dev;
	__u32 gen;		/* a deleted file's inode number reused soon after is another file */
};

struct file_recent {
	__u64 ts;		/* when the last record of this key was sent (bpf_ktime_get_ns) */
	__u64 pending;		/* events folded since */
};

struct sock_watch_key {
	__u32 tgid;
	__s32 fd;
};

struct sock_watch {
	__u64 file;		/* the socket's struct file: a reused fd never matches */
	__u8 addr[16];
	__u16 family;
	__u16 port;
	__u32 proto;		/* enum sock_proto */
	__u32 sock_type;
	__u32 sock_ino;
};

struct walk_ctx {
	__u64 dentry;		/* kernel addresses, read with CO-RE probe reads */
	__u64 mnt;		/* struct mount * */
	__u64 mnt_root;		/* its root dentry */
	__u32 off;		/* next byte of scratch data */
	__u32 end;		/* first byte the chain may not use */
	__u32 cut;
	__u32 watch;		/* look the names up in watch_names */
	__u32 matched;
	__u32 depth;
};

/* The walk's state lives in the map value, not on the stack: the verifier does not track what a map value
 * holds, so every loop iteration looks the same to it and verifying the loop stays cheap. */
struct file_scratch {
	struct rec_file rec;
	char slack[USER_PATH + NAME_READ];
	struct walk_ctx w;
};

struct payload_scratch {
	struct rec_dns rec;
	__u8 slack[PAYLOAD_MAX];	/* the verifier's bound for a gathered iovec copied at an offset */
};

#endif /* CLAUDE_FILES_H */

/* The second inclusion, after the tracking helpers: maps and programs. */
#if defined(CLAUDE_FILES_PROGRAMS) && !defined(CLAUDE_FILES_PROGRAMS_DONE)
#define CLAUDE_FILES_PROGRAMS_DONE

/* Set from user space before load. */
const volatile __u64 file_summary_ns = 1000000000ULL;
const volatile __u32 watch_reads = 1;		/* look for watched names in tracked processes' reads */
const volatile __u32 watch_all_reads = 0;	/* send every tracked read (a watch glob without a literal name) */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct file_recent_key);
	__type(value, struct file_recent);
} file_recent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, char[WATCH_NAME_LEN]);
	__type(value, __u32);
} watch_names SEC(".maps");

/* LRU: a watched socket's entry goes when its fd is reused (see net_event), and the least recently used ones
 * (sockets of processes long gone) make room when it is full. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sock_watch_key);
	__type(value, struct sock_watch);
} sock_watch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_scratch);
} file_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct payload_scratch);
} payload_scratch SEC(".maps");

/* ---- dentry chains ------------------------------------------------------------------------------------- */

static __always_inline struct file_scratch *fscratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&file_scratch, &zero);
}

/* bpf_loop callback: append the current dentry's name (or cross to the parent mount); 1 stops. */
static long walk_step(__u32 i, void *unused)
{
	struct file_scratch *s = fscratch();
	struct walk_ctx *w;
	struct dentry *d, *parent;
	const unsigned char *name;
	__u32 len, *where;
	long n;

	if (!s)
		return 1;
	w = &s->w;
	d = (struct dentry *)w->dentry;
	if (!d)
		return 1;
	if (w->dentry == w->mnt_root) {
		struct mount *m = (struct mount *)w->mnt;
		struct mount *up = BPF_CORE_READ(m, mnt_parent);

		if (!up || up == m)
			return 1;	/* the root of the mount tree */
		w->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		w->mnt = (__u64)up;
		w->mnt_root = (__u64)BPF_CORE_READ(up, mnt.mnt_root);
		return 0;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (!parent || parent == d)
		return 1;	/* a file system's root outside any mount we came through */
	len = BPF_CORE_READ(d, d_name.len);
	name = BPF_CORE_READ(d, d_name.name);
	if (w->off + len + 1 > w->end) {
		w->cut = 1;
		return 1;
	}
	n = bpf_probe_read_kernel_str(&s->rec.data[w->off & FILE_MASK], NAME_READ, name);
	if (n <= 0) {
		w->cut = 1;
		return 1;
	}
	if (w->watch && !w->matched && len < WATCH_NAME_LEN) {
		char key[WATCH_NAME_LEN] = {};

		bpf_probe_read_kernel_str(key, sizeof(key), name);
		where = bpf_map_lookup_elem(&watch_names, key);
		if (where && (*where & (w->depth == 0 ? WATCH_LEAF : WATCH_DIR)))
			w->matched = 1;
	}
	w->off += n;
	w->depth++;
	w->dentry = (__u64)parent;
	return 0;
}

/* Walk the chain of (dentry, vfsmount) into scratch data from off; returns the bytes used. */
static __always_inline __u32 walk_path(struct file_scratch *s, struct dentry *dentry, struct vfsmount *vmnt,
				       __u32 off, __u32 end, bool watch)
{
	struct walk_ctx *w = &s->w;

	w->dentry = (__u64)dentry;
	w->mnt = (__u64)vmnt - bpf_core_field_offset(struct mount, mnt);
	w->mnt_root = (__u64)BPF_CORE_READ(vmnt, mnt_root);
	w->off = off;
	w->end = end;
	w->cut = 0;
	w->watch = watch;
	w->matched = 0;
	w->depth = 0;
	bpf_loop(WALK_MAX, walk_step, NULL, 0);
	return w->off - off;
}

/* The struct file of the current process's fd, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **arr;
	struct file *f = NULL;

	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	arr = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &arr[fd]);
	return f;
}

/*
 * One path argument: the caller's name (at most USER_PATH bytes), and unless it is absolute, the chain of the
 * directory it is relative to (dirfd or cwd). Sets *name_len and returns the walk's length; `cut` says
 * either was cut short.
 */
static __always_inline __u32 take_path(struct file_scratch *s, struct task_struct *task,
				       int dfd, const char *uname, __u32 off, __u16 *name_len, bool *walked,
				       __u32 *cut)
{
	struct dentry *dentry;
	struct vfsmount *vmnt;
	long n;

	*walked = false;
	*cut = 0;
	n = read_user_str(&s->rec.data[off & FILE_MASK], USER_PATH, uname);
	if (n <= 0) {
		*name_len = 0;
		return 0;
	}
	if (n == USER_PATH)
		*cut = 1;
	*name_len = n - 1;
	if (s->rec.data[off & FILE_MASK] == '/')
		return 0;	/* absolute: nothing to resolve against */
	off += n - 1;
	if (dfd == AT_FDCWD) {
		dentry = BPF_CORE_READ(task, fs, pwd.dentry);
		vmnt = BPF_CORE_READ(task, fs, pwd.mnt);
	} else {
		struct file *f = fd_file(task, dfd);

		if (!f)
			return 0;
		dentry = BPF_CORE_READ(f, f_path.dentry);
		vmnt = BPF_CORE_READ(f, f_path.mnt);
	}
	if (!dentry || !vmnt)
		return 0;
	*walked = true;
	n = walk_path(s, dentry, vmnt, off, FILE_DATA - NAME_READ, false);
	*cut |= s->w.cut;
	return n;
}

/* Fold a repeated write-open into file_recent; true when this event was folded (nothing to send). */
static __always_inline bool fold_repeat(struct counters *c, __u32 tgid, __u32 op, __u64 ino, __u32 dev,
					__u32 gen, __u32 *count)
{
	struct file_recent_key key = { .tgid = tgid, .op = op, .ino = ino, .dev = dev, .gen = gen };
	struct file_recent fresh = {}, *r;
	__u64 now;

	*count = 1;
	if (!file_summary_ns)
		return false;
	now = bpf_ktime_get_ns();
	r = bpf_map_lookup_elem(&file_recent, &key);
	if (r) {
		if (now - r->ts < file_summary_ns) {
			__sync_fetch_and_add(&r->pending, 1);
			c->file_summarised++;
			return true;
		}
		*count = 1 + r->pending;
		r->pending = 0;
		r->ts = now;
		return false;
	}
	fresh.ts = now;
	bpf_map_update_elem(&file_recent, &key, &fresh, BPF_NOEXIST);
	return false;
}

/*
 * A tracked process's file syscall returned. `sc` is a constant in each program, so only its case remains.
 */
static __always_inline void file_event(struct syscall_exit_args *ctx, __u32 tgid, const __u32 sc)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	struct counters *c = cnt();
	struct file_scratch *s = fscratch();
	struct proc_info *p;
	const char *name1 = NULL, *name2 = NULL;
	int dfd1 = AT_FDCWD, dfd2 = AT_FDCWD, fd = -1;
	__u32 op = 0, mode = 0, oflags = 0, uid = 0, gid = 0, count = 1, flags = 0, off, size, cut;
	long ret = ctx->ret;
	struct file *f = NULL;
	bool reading = false, walked;
	__u64 ino = 0;
	__u32 dev = 0, gen = 0;
	__u16 nlen;

	if (!c || !s)
		return;
	p = lookup_tracked(tgid, leader_start(task));
	if (!p)
		return;
	switch (sc) {
	case SC_OPEN:
		name1 = (const char *)regs->di;
		oflags = regs->si;
		mode = regs->dx;
		break;
	case SC_OPENAT:
		dfd1 = regs->di;
		name1 = (const char *)regs->si;
		oflags = regs->dx;
		mode = regs->r10;
		break;
	case SC_OPENAT2: {
		__u64 how[2] = {};	/* struct open_how: flags, mode, resolve */

		dfd1 = regs->di;
		name1 = (const char *)regs->si;
		bpf_probe_read_user(how, sizeof(how), (const void *)regs->dx);
		oflags = how[0];
		mode = how[1];
		break;
	}
	case SC_CREAT:
		name1 = (const char *)regs->di;
		oflags = 1 | O_CREAT | O_TRUNC;
		mode = regs->si;
		break;
	case SC_UNLINK:
		op = FOP_DELETE;
		name1 = (const char *)regs->di;
		break;
	case SC_UNLINKAT:
		op = (regs->dx & AT_REMOVEDIR) ? FOP_RMDIR : FOP_DELETE;
		dfd1 = regs->di;
		name1 = (const char *)regs->si;
		break;
	case SC_RMDIR:
		op = FOP_RMDIR;
		name1 = (const char *)regs->di;
		break;
	case SC_RENAME:
		op = FOP_RENAME;
		name1 = (const char *)regs->di;
		name2 = (const char *)regs->si;
		break;
	case SC_RENAMEAT:
	case SC_RENAMEAT2:
		op = FOP_RENAME;
		dfd1 = regs->di;
		name1 = (const char *)regs->si;
		dfd2 = regs->dx;
		name2 = (const char *)regs->r10;
		break;
	case SC_MKDIR:
		op = FOP_MKDIR;
		name1 = (const char *)regs->di;
		mode = regs->si;
		break;
	case SC_MKDIRAT:
		op = FOP_MKDIR;
		dfd1 = regs->di;
		name1 = (const char *)regs->si;
		mode = regs->dx;
		break;
	case SC_CHMOD:
		op = FOP_CHMOD;
		name1 = (const char *)regs->di;
		mode = regs->si;
		break;
	case SC_FCHMOD:
		op = FOP_CHMOD;
		fd = regs->di;
		mode = regs->si;
		break;
	case SC_FCHMODAT:
	case SC_FCHMODAT2:
		op = FOP_CHMOD;
		dfd1 = regs->di;
		name1 = (const char *)regs->si;
		mode = regs->dx;
		break;
	case SC_CHOWN:
	case SC_LCHOWN:
		op = FOP_CHOWN;
		name1 = (const char *)regs->di;
		uid = regs->si;
		gid = regs->dx;
		break;
	case SC_FCHOWN:
		op = FOP_CHOWN;
		fd = regs->di;
		uid = regs->si;
		gid = regs->dx;
		break;
	case SC_FCHOWNAT:
		op = FOP_CHOWN;
		dfd1 = regs->di;
		name1 = (const char *)regs->si;
		uid = regs->dx;
		gid = regs->r10;
		break;
	case SC_LINK:		/* path: the new name; path2: the file it names */
		op = FOP_LINK;
		name1 = (const char *)regs->si;
		name2 = (const char *)regs->di;
		break;
	case SC_LINKAT:
		op = FOP_LINK;
		dfd1 = regs->dx;
		name1 = (const char *)regs->r10;
		dfd2 = regs->di;
		name2 = (const char *)regs->si;
		break;
	case SC_SYMLINK:	/* path: the link; path2: its target, as written */
		op = FOP_SYMLINK;
		name1 = (const char *)regs->si;
		name2 = (const char *)regs->di;
		dfd2 = -1;
		break;
	case SC_SYMLINKAT:
		op = FOP_SYMLINK;
		dfd1 = regs->si;
		name1 = (const char *)regs->dx;
		name2 = (const char *)regs->di;
		dfd2 = -1;
		break;
	case SC_TRUNCATE:
		op = FOP_TRUNCATE;
		name1 = (const char *)regs->di;
		break;
	case SC_FTRUNCATE:
		op = FOP_TRUNCATE;
		fd = regs->di;
		break;
	}
	if (sc == SC_OPEN || sc == SC_OPENAT || sc == SC_OPENAT2 || sc == SC_CREAT) {
		if (!(oflags & O_WRITING)) {
			/* a read: a successful one when its path has a watched name, or one refused for lack
			 * of permission (user space matches the globs; a missing file is not a read) */
			if (!watch_reads || (ret < 0 && ret != -EACCES && ret != -EPERM))
				return;
			reading = true;
			op = FOP_READ;
		}
		if (!(oflags & O_CREAT))
			mode = 0;
		if (ret >= 0)
			fd = ret;
	}
	if (fd >= 0)
		f = fd_file(task, fd);
	if (f) {
		__u32 fmt = BPF_CORE_READ(f, f_inode, i_mode) & 0170000;

		if (reading && fmt == 0040000)
			return;		/* a directory listed, not a file read */
		/* a terminal, /dev/null, a pipe or a socket opened for writing changes nothing on disk */
		if (!reading && (sc == SC_OPEN || sc == SC_OPENAT || sc == SC_OPENAT2 || sc == SC_CREAT) &&
		    (fmt == 0020000 || fmt == 0010000 || fmt == 0140000))
			return;
	}
	if (f && !reading && (sc == SC_OPEN || sc == SC_OPENAT || sc == SC_OPENAT2 || sc == SC_CREAT)) {
		if (BPF_CORE_READ(f, f_mode) & FMODE_CREATED)
			op = FOP_CREATE;
		else if (oflags & O_TRUNC)
			op = FOP_TRUNCATE;
		else
			op = FOP_WRITE;
		ino = BPF_CORE_READ(f, f_inode, i_ino);
		dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
		gen = BPF_CORE_READ(f, f_inode, i_generation);
		c->kind[REC_FILE].tracked++;
		if (fold_repeat(c, tgid, op, ino, dev, gen, &count))
			return;
	} else if (!reading) {
		if (!op)	/* an open for writing that failed */
			op = (oflags & O_CREAT) ? FOP_CREATE : (oflags & O_TRUNC) ? FOP_TRUNCATE : FOP_WRITE;
		c->kind[REC_FILE].tracked++;
	}

	off = 0;
	s->rec.name1_len = 0;
	s->rec.walk1_len = 0;
	s->rec.name2_len = 0;
	s->rec.walk2_len = 0;
	if (f) {
		struct dentry *dentry = BPF_CORE_READ(f, f_path.dentry);
		struct vfsmount *vmnt = BPF_CORE_READ(f, f_path.mnt);

		if (dentry && vmnt) {
			s->rec.walk1_len = walk_path(s, dentry, vmnt, 0, FILE_DATA - NAME_READ,
						     reading && !watch_all_reads);
			flags |= FF_FILE1 | FF_WALK1;
			if (s->w.cut)
				flags |= FF_CUT1;
			if (reading && !watch_all_reads && !s->w.matched)
				return;
		}
		off = s->rec.walk1_len;
	} else if (name1) {
		s->rec.walk1_len = take_path(s, task, dfd1, name1, 0, &nlen, &walked, &cut);
		s->rec.name1_len = nlen;
		if (walked)
			flags |= FF_WALK1;
		if (cut)
			flags |= FF_CUT1;
		off = s->rec.name1_len + s->rec.walk1_len;
	}
	if (reading) {
		if (!(flags & FF_FILE1) && ret >= 0)
			return;
		flags |= FF_SENSITIVE;
		c->kind[REC_FILE].tracked++;
	}
	if (name2 && off < FILE_DATA - USER_PATH - NAME_READ) {
		if (dfd2 == -1) {	/* a symlink's target: text, never resolved */
			long n = read_user_str(&s->rec.data[off & FILE_MASK], USER_PATH, name2);

			s->rec.name2_len = n > 0 ? n - 1 : 0;
			if (n == USER_PATH)
				flags |= FF_CUT2;
		} else {
			s->rec.walk2_len = take_path(s, task, dfd2, name2, off, &nlen, &walked, &cut);
			s->rec.name2_len = nlen;
			if (walked)
				flags |= FF_WALK2;
			if (cut)
				flags |= FF_CUT2;
		}
		off += s->rec.name2_len + s->rec.walk2_len;
	} else if (name2) {
		flags |= FF_CUT2;
	}

	fill_header(&s->rec, REC_FILE, task, tgid, p);
	s->rec.op = op;
	s->rec.ret = ret < 0 ? ret : 0;
	s->rec.count = count;
	s->rec.fflags = flags;
	s->rec.mode = mode;
	s->rec.owner_uid = uid;
	s->rec.owner_gid = gid;
	s->rec.open_flags = oflags;
	s->rec.ino = ino;
	s->rec.dev = dev;
	s->rec.gen = gen;
	size = off;
	if (size > FILE_DATA)
		size = FILE_DATA;
	size += __builtin_offsetof(struct rec_file, data);
	if (bpf_ringbuf_output(&events, &s->rec, size, wake_flag(size, false)))
		c->kind[REC_FILE].lost++;
	else
		c->kind[REC_FILE].emitted++;
}

#define FILE_PROG(sys, sc)                                                                                    \
	SEC("tp/syscalls/sys_exit_" #sys)                                                                      \
	int files_exit_##sys(struct syscall_exit_args *ctx)                                                   \
	{                                                                                                     \
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;                                                 \
                                                                                                              \
		if (maybe_tracked(tgid))                                                                       \
			file_event(ctx, tgid, sc);                                                             \
		return 0;                                                                                     \
	}

FILE_PROG(open, SC_OPEN)
FILE_PROG(openat, SC_OPENAT)
FILE_PROG(openat2, SC_OPENAT2)
FILE_PROG(creat, SC_CREAT)
FILE_PROG(unlink, SC_UNLINK)
FILE_PROG(unlinkat, SC_UNLINKAT)
FILE_PROG(rmdir, SC_RMDIR)
FILE_PROG(rename, SC_RENAME)
FILE_PROG(renameat, SC_RENAMEAT)
FILE_PROG(renameat2, SC_RENAMEAT2)
FILE_PROG(mkdir, SC_MKDIR)
FILE_PROG(mkdirat, SC_MKDIRAT)
FILE_PROG(chmod, SC_CHMOD)
FILE_PROG(fchmod, SC_FCHMOD)
FILE_PROG(fchmodat, SC_FCHMODAT)
FILE_PROG(fchmodat2, SC_FCHMODAT2)
FILE_PROG(chown, SC_CHOWN)
FILE_PROG(lchown, SC_LCHOWN)
FILE_PROG(fchown, SC_FCHOWN)
FILE_PROG(fchownat, SC_FCHOWNAT)
FILE_PROG(link, SC_LINK)
FILE_PROG(linkat, SC_LINKAT)
FILE_PROG(symlink, SC_SYMLINK)
FILE_PROG(symlinkat, SC_SYMLINKAT)
FILE_PROG(truncate, SC_TRUNCATE)
FILE_PROG(ftruncate, SC_FTRUNCATE)

/* ---- DNS and TLS --------------------------------------------------------------------------------------- */

static __always_inline __u32 socket_type(struct file *f)
{
	struct socket *sock = BPF_CORE_READ(f, private_data);

	return BPF_CORE_READ(sock, type);
}

/* A tracked connect to port 53 or 443 returned (0, or -EINPROGRESS): watch the socket. `addr` is the
 * connect's IPv6 or IPv4-mapped address. */
static __always_inline void watch_connect(struct task_struct *task, __u32 tgid, int fd, __u16 family,
					  __u16 port, const __u8 *addr, long ret)
{
	struct sock_watch_key key = { .tgid = tgid, .fd = fd };
	struct sock_watch v = {};
	struct file *f;

	if ((port != 53 && port != 443) || (ret != 0 && ret != -EINPROGRESS))
		return;
	f = fd_file(task, fd);
	if (!f)
		return;
	v.file = (__u64)f;
	__builtin_memcpy(v.addr, addr, 16);
	v.family = family;
	v.port = port;
	v.proto = port == 53 ? SOCK_DNS : SOCK_TLS;
	v.sock_type = socket_type(f);
	v.sock_ino = BPF_CORE_READ(f, f_inode, i_ino);
	bpf_map_update_elem(&sock_watch, &key, &v, BPF_ANY);
}

struct user_iovec {
	void *base;
	__u64 len;
};

/* Send the first `n` of the `len` bytes a call on watched socket w moved, already copied into s->rec.data, as
 * a dns or tls record. */
static __always_inline void payload_out(struct task_struct *task, __u32 tgid, struct proc_info *p,
					struct sock_watch *w, int fd, bool sent, struct payload_scratch *s, __u64 n,
					__u64 len, struct counters *c)
{
	__u32 kind = w->proto == SOCK_DNS ? REC_DNS : REC_TLS, size;

	barrier_var(n);		/* the verifier's bound, which the compiler would prove redundant */
	if (n > PAYLOAD_MAX)
		n = PAYLOAD_MAX;
	fill_header(&s->rec, kind, task, tgid, p);
	s->rec.proto = w->proto;
	s->rec.sent = sent;
	s->rec.fd = fd;
	s->rec.sock_type = w->sock_type;
	s->rec.family = w->family;
	s->rec.port = w->port;
	s->rec.size = len;
	__builtin_memcpy(s->rec.addr, w->addr, 16);
	s->rec.data_len = n;
	s->rec.sock_ino = w->sock_ino;
	size = __builtin_offsetof(struct rec_dns, data) + n;
	if (bpf_ringbuf_output(&events, &s->rec, size, wake_flag(size, false)))
		c->kind[kind].lost++;
	else
		c->kind[kind].emitted++;
}

static __always_inline struct payload_scratch *payload_begin(struct sock_watch *w, struct counters *c)
{
	__u32 zero = 0;
	struct payload_scratch *s = bpf_map_lookup_elem(&payload_scratch, &zero);

	if (s)
		c->kind[w->proto == SOCK_DNS ? REC_DNS : REC_TLS].tracked++;
	return s;
}

/* Send `len` bytes at user address buf of watched socket w as a dns or tls record. */
static __always_inline void send_payload(struct task_struct *task, __u32 tgid, struct proc_info *p,
					 struct sock_watch *w, int fd, bool sent, const void *buf, __u64 len,
					 struct counters *c)
{
	struct payload_scratch *s = payload_begin(w, c);
	__u32 n = len > PAYLOAD_MAX ? PAYLOAD_MAX : len;

	if (!s)
		return;
	if (bpf_probe_read_user(s->rec.data, n, buf)) {
		c->read_errors++;
		return;
	}
	payload_out(task, tgid, p, w, fd, sent, s, n, len, c);
}

/* Send the `len` bytes a call moved through the iovecs at user address uiov (iovcnt of them): the first
 * IOV_GATHER iovecs are copied one after the other, so the capture is always the first bytes of the `len`. */
static __always_inline void send_iovs(struct task_struct *task, __u32 tgid, struct proc_info *p,
				      struct sock_watch *w, int fd, bool sent, const struct user_iovec *uiov,
				      __u64 iovcnt, __u64 len, struct counters *c)
{
	struct payload_scratch *s = payload_begin(w, c);
	struct user_iovec iov;
	__u32 off = 0;

	if (!s)
		return;
	for (int i = 0; i < IOV_GATHER; i++) {
		__u64 n;

		if (i >= iovcnt || off >= len || off >= PAYLOAD_MAX)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov), &uiov[i]))
			break;
		n = iov.len;
		if (n > len - off)
			n = len - off;
		if (n > PAYLOAD_MAX - off)
			n = PAYLOAD_MAX - off;
		barrier_var(n);
		if (n > PAYLOAD_MAX)
			n = PAYLOAD_MAX;
		if (n && bpf_probe_read_user(&s->rec.data[off & (PAYLOAD_MAX - 1)], n, iov.base))
			break;
		off += n;
	}
	if (!off) {
		c->read_errors++;
		return;
	}
	payload_out(task, tgid, p, w, fd, sent, s, off, len, c);
}

/* A sendto/sendmsg to port 53 of a socket not watched yet: watch it (sockaddr at user address sa). */
static __always_inline struct sock_watch *watch_sendto(struct task_struct *task, __u32 tgid, int fd,
						       const void *sa, __u32 salen)
{
	struct sock_watch_key key = { .tgid = tgid, .fd = fd };
	struct sock_watch v = {};
	__u8 buf[28] = {};
	struct file *f;
	__u16 family, port;

	if (!sa || salen < 8)
		return NULL;
	if (bpf_probe_read_user(buf, salen > 28 ? 28 : (salen & 31), sa))
		return NULL;
	family = buf[0] | (buf[1] << 8);
	port = (buf[2] << 8) | buf[3];
	if (port != 53)
		return NULL;
	if (family == AF_INET) {
		v.addr[10] = 0xff;
		v.addr[11] = 0xff;
		__builtin_memcpy(&v.addr[12], &buf[4], 4);
	} else if (family == AF_INET6 && salen >= 24) {
		__builtin_memcpy(v.addr, &buf[8], 16);
	} else {
		return NULL;
	}
	f = fd_file(task, fd);
	if (!f)
		return NULL;
	v.file = (__u64)f;
	v.family = family;
	v.port = port;
	v.proto = SOCK_DNS;
	v.sock_type = socket_type(f);
	v.sock_ino = BPF_CORE_READ(f, f_inode, i_ino);
	bpf_map_update_elem(&sock_watch, &key, &v, BPF_ANY);
	return bpf_map_lookup_elem(&sock_watch, &key);
}

struct user_msghdr_head {
	void *name;
	int namelen;
	int pad;
	void *iov;
	__u64 iovlen;
};

/* The sending calls first: `sent` is sc <= NET_SENDMMSG. */
enum net_sc {
	NET_WRITE, NET_WRITEV, NET_SENDTO, NET_SENDMSG, NET_SENDMMSG,
	NET_READ, NET_READV, NET_RECVFROM, NET_RECVMSG, NET_RECVMMSG,
};

/* A tracked process's send or receive call returned; only watched sockets cost more than a hash lookup. */
static __always_inline void net_event(struct syscall_exit_args *ctx, __u32 tgid, const __u32 sc)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	bool sent = sc <= NET_SENDMMSG;
	struct sock_watch_key key = { .tgid = tgid, .fd = regs->di };
	struct user_msghdr_head mh = {};
	struct sock_watch *w;
	struct proc_info *p;
	struct counters *c;
	long ret = ctx->ret;

	if (ret <= 0)
		return;
	w = bpf_map_lookup_elem(&sock_watch, &key);
	if (w) {
		struct file *f = fd_file(task, key.fd);

		/* the fd was closed and names another file now (whose struct may even sit where the watched
		 * one did): forget the old socket, and let a send to port 53 watch the new one */
		if (w->file != (__u64)f || w->sock_ino != BPF_CORE_READ(f, f_inode, i_ino)) {
			bpf_map_delete_elem(&sock_watch, &key);
			w = NULL;
		}
	}
	if (!w) {
		if (sc == NET_SENDTO) {
			w = watch_sendto(task, tgid, key.fd, (const void *)regs->r8, regs->r9);
		} else if (sc == NET_SENDMSG) {
			if (bpf_probe_read_user(&mh, sizeof(mh), (const void *)regs->si))
				return;
			w = watch_sendto(task, tgid, key.fd, mh.name, mh.namelen);
		}
		if (!w)
			return;
	}
	if (w->proto == SOCK_TLS && !sent)
		return;
	c = cnt();
	p = lookup_tracked(tgid, leader_start(task));
	if (!c || !p)
		return;
	switch (sc) {
	case NET_WRITE:
	case NET_READ:
	case NET_SENDTO:
	case NET_RECVFROM:
		send_payload(task, tgid, p, w, key.fd, sent, (const void *)regs->si, ret, c);
		break;
	case NET_WRITEV:
	case NET_READV:
		send_iovs(task, tgid, p, w, key.fd, sent, (const struct user_iovec *)regs->si, regs->dx, ret, c);
		break;
	case NET_SENDMSG:
	case NET_RECVMSG:
		if (!mh.iov && bpf_probe_read_user(&mh, sizeof(mh), (const void *)regs->si))
			return;
		send_iovs(task, tgid, p, w, key.fd, sent, mh.iov, mh.iovlen, ret, c);
		break;
	case NET_SENDMMSG:
	case NET_RECVMMSG:
		/* struct mmsghdr: a user_msghdr (56 bytes) and the message's length */
		for (int i = 0; i < MMSG_MAX; i++) {
			const __u8 *m = (const __u8 *)regs->si + i * 64;
			__u32 mlen = 0;

			if (i >= ret)
				break;
			struct user_iovec iov;

			/* datagrams, one iovec each (glibc's A and AAAA): the first iovec only, which keeps the
			 * verifier's work for the four messages small */
			if (bpf_probe_read_user(&mh, sizeof(mh), m) ||
			    bpf_probe_read_user(&mlen, sizeof(mlen), m + 56) ||
			    !mh.iovlen || bpf_probe_read_user(&iov, sizeof(iov), mh.iov))
				break;
			send_payload(task, tgid, p, w, key.fd, sent, iov.base, mlen < iov.len ? mlen : iov.len, c);
		}
		break;
	}
	if (w->proto == SOCK_TLS)
		bpf_map_delete_elem(&sock_watch, &key);	/* the ClientHello is the first write */
}

#define NET_PROG(sys, sc)                                                                                     \
	SEC("tp/syscalls/sys_exit_" #sys)                                                                      \
	int files_exit_##sys(struct syscall_exit_args *ctx)                                                   \
	{                                                                                                     \
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;                                                 \
                                                                                                              \
		if (maybe_tracked(tgid))                                                                       \
			net_event(ctx, tgid, sc);                                                              \
		return 0;                                                                                     \
	}

NET_PROG(write, NET_WRITE)
NET_PROG(writev, NET_WRITEV)
NET_PROG(sendto, NET_SENDTO)
NET_PROG(sendmsg, NET_SENDMSG)
NET_PROG(sendmmsg, NET_SENDMMSG)
NET_PROG(read, NET_READ)
NET_PROG(readv, NET_READV)
NET_PROG(recvfrom, NET_RECVFROM)
NET_PROG(recvmsg, NET_RECVMSG)
NET_PROG(recvmmsg, NET_RECVMMSG)

#endif /* CLAUDE_FILES_PROGRAMS */
