/* file_loop MODE N [DIR]: N iterations of one syscall pattern, then print {"ns_per_op": ..., "cpu_ns_per_op":
 * ...} (wall time, and the process's own CPU time, which other load on the host does not inflate).
 *   openat  open("/etc/hostname", O_RDONLY) and close it (a read: recorded only when watched)
 *   write   write one byte to /dev/null
 *   writev  writev two one-byte iovecs to /dev/null
 *   read    read one byte from /dev/zero
 *   sendto  send one datagram to 127.0.0.1:9 from an unconnected socket
 *   create  create, write and close DIR/fNNNNN (N distinct files: one file record each)
 *   rewrite open DIR/log for appending, write, close (one file: folded into a count)
 *   dns     send a 29-byte DNS query to 127.0.0.1:53 from an unconnected socket (one dns record each)
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static long long clock_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "openat";
	long n = argc > 2 ? atol(argv[2]) : 100000;
	const char *dir = argc > 3 ? argv[3] : "/tmp";
	static const unsigned char query[] = { 0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', 'p', 'i',
					       4, 't', 'e', 's', 't', 0, 0, 1, 0, 1 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char path[4096];
	int fd = -1, out = open("/dev/null", O_WRONLY), zero = open("/dev/zero", O_RDONLY);
	struct iovec iov[2] = { { .iov_base = "x", .iov_len = 1 }, { .iov_base = "y", .iov_len = 1 } };
	char byte;
	long long t0, c0;

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (!strcmp(mode, "sendto") || !strcmp(mode, "dns")) {
		fd = socket(AF_INET, SOCK_DGRAM, 0);
		sa.sin_port = htons(!strcmp(mode, "dns") ? 53 : 9);
	}
	t0 = now_ns();
	c0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	for (long i = 0; i < n; i++) {
		if (!strcmp(mode, "openat")) {
			int f = open("/etc/hostname", O_RDONLY);
			if (f >= 0)
				close(f);
		} else if (!strcmp(mode, "write")) {
			if (write(out, "x", 1) != 1)
				return 1;
		} else if (!strcmp(mode, "writev")) {
			if (writev(out, iov, 2) != 2)
				return 1;
		} else if (!strcmp(mode, "read")) {
			if (read(zero, &byte, 1) != 1)
				return 1;
		} else if (!strcmp(mode, "sendto") || !strcmp(mode, "dns")) {
			sendto(fd, query, sizeof(query), 0, (struct sockaddr *)&sa, sizeof(sa));
		} else if (!strcmp(mode, "create") || !strcmp(mode, "rewrite")) {
			int create = !strcmp(mode, "create"), f;

			if (create)
				snprintf(path, sizeof(path), "%s/f%06ld", dir, i);
			else
				snprintf(path, sizeof(path), "%s/log", dir);
			f = open(path, O_WRONLY | O_CREAT | (create ? O_TRUNC : O_APPEND), 0644);
			if (f < 0 || write(f, "x", 1) != 1)
				return 1;
			close(f);
		} else {
			fprintf(stderr, "unknown mode %s\n", mode);
			return 2;
		}
	}
	printf("{\"ns_per_op\": %.1f, \"cpu_ns_per_op\": %.1f}\n", (double)(now_ns() - t0) / (n ? n : 1),
	       (double)(clock_ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / (n ? n : 1));
	return 0;
}
