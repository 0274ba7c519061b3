/* exec_storm RATE SECS WORKERS TARGET: run TARGET (fork+exec, no arguments) about RATE times per second for
 * SECS seconds from WORKERS parallel forked workers, wait for every child, and print
 * {"execs": N, "secs": S, "rate": R, "failed": F, "pid": P}. RATE 0 means as fast as possible.
 * Run through a symlink named after the process to be tracked: every child belongs to its tree.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: exec_storm RATE SECS WORKERS TARGET\n");
		return 2;
	}
	double rate = atof(argv[1]), secs = atof(argv[2]);
	int workers = atoi(argv[3]);
	char *target = argv[4];
	char *child_argv[] = { target, NULL };
	long *counts = mmap(NULL, sizeof(long) * 2 * workers, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	long long t0 = now_ns(), end = t0 + (long long)(secs * 1e9);
	for (int w = 0; w < workers; w++) {
		if (fork() == 0) {
			double per_worker = rate / workers;
			long done = 0, failed = 0;
			for (;;) {
				long long t = now_ns();
				if (t >= end)
					break;
				if (per_worker > 0) {
					long long due = t0 + (long long)(done * 1e9 / per_worker);
					if (due > t) {
						struct timespec d = { (due - t) / 1000000000LL, (due - t) % 1000000000LL };
						nanosleep(&d, NULL);
					}
				}
				pid_t pid;
				int st;
				if (posix_spawn(&pid, target, NULL, NULL, child_argv, environ) != 0) {
					failed++;
					continue;
				}
				waitpid(pid, &st, 0);
				if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
					done++;
				else
					failed++;
			}
			counts[2 * w] = done;
			counts[2 * w + 1] = failed;
			_exit(0);
		}
	}
	while (wait(NULL) > 0)
		;
	double took = (now_ns() - t0) / 1e9;
	long execs = 0, failed = 0;
	for (int w = 0; w < workers; w++) {
		execs += counts[2 * w];
		failed += counts[2 * w + 1];
	}
	printf("{\"execs\": %ld, \"secs\": %.3f, \"rate\": %.1f, \"failed\": %ld, \"pid\": %d}\n", execs, took,
	       execs / took, failed, getpid());
	return 0;
}
