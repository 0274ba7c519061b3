/* connect_loop N [udp|tcp] [port] [gap_us]: time N connect() calls to 127.0.0.1, gap_us apart (default 0), and
 * print {"ns_per_op": ...} (the gaps included).
 * udp (default) connects one datagram socket again and again: no packet is sent, so the syscall and its
 * tracepoints dominate. tcp opens a socket per call and connects to a closed port (ECONNREFUSED).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int tcp = argc > 2 && strcmp(argv[2], "tcp") == 0;
	int port = argc > 3 ? atoi(argv[3]) : 9;
	long gap_us = argc > 4 ? atol(argv[4]) : 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int fd = tcp ? -1 : socket(AF_INET, SOCK_DGRAM, 0);
	long failed = 0;
	long long t0 = now_ns();
	for (long i = 0; i < n; i++) {
		if (tcp)
			fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
			failed++;
		if (tcp)
			close(fd);
		if (gap_us)
			usleep(gap_us);
	}
	long long t1 = now_ns();
	printf("{\"ops\": %ld, \"failed\": %ld, \"ns_per_op\": %.1f, \"pid\": %d}\n", n, failed,
	       (double)(t1 - t0) / (double)n, getpid());
	return 0;
}
