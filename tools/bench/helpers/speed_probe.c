/* speed_probe [ROUNDS]: the CPU time of a fixed, syscall-free piece of work (fill a 64 KiB array from an LCG and
 * qsort it, ROUNDS times), printed as {"probe_ms": ...}. Measured on the CPU a timed job is about to run on, it
 * says how fast that CPU is right now: on a shared VM a virtual CPU's speed changes by tens of percent for
 * seconds at a time (the host's other load), and a job timed across such a change cannot resolve 1 %. Between
 * its two clock readings it makes no system call, so no BPF program runs there: the monitor cannot change what
 * it measures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { N = 16384 };

static double cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	static unsigned a[N];
	int rounds = argc > 1 ? atoi(argv[1]) : 4;
	unsigned s = 12345;
	double t0 = cpu_ms();

	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < N; i++) {
			s = s * 1103515245u + 12345u;
			a[i] = s;
		}
		qsort(a, N, sizeof a[0], cmp);
	}
	printf("{\"probe_ms\": %.3f, \"check\": %u}\n", cpu_ms() - t0, a[N / 2] & 1);
	return 0;
}
