// Reference loader for tests: loads a BPF object with the system's libbpf and prints each program's tag.
//
// usage: libbpf_loader OBJECT PIN_ROOT [PROGRAM...]
//   PIN_ROOT: bpffs directory for maps declared LIBBPF_PIN_BY_NAME (keeps tests off /sys/fs/bpf itself)
//   PROGRAM:  load only these programs (default: libbpf's, all but SEC("?...") ones)
// output, one line per loaded program:  <name> <tag as 16 hex digits> <xlated instruction count>
// Set LIBBPF_LOADER_VERBOSE=1 to see libbpf's own messages on stderr. Exit status 1 on any failure.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	(void)level;
	(void)fmt;
	(void)args;
	return 0;
}

static int verbose_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static int wanted(const char *name, int argc, char **argv)
{
	if (argc <= 3)
		return 1;
	for (int i = 3; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s OBJECT PIN_ROOT [PROGRAM...]\n", argv[0]);
		return 2;
	}
	const char *verbose = getenv("LIBBPF_LOADER_VERBOSE");
	libbpf_set_print(verbose && *verbose == '1' ? verbose_print : quiet_print);

	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = argv[2]);
	struct bpf_object *obj = bpf_object__open_file(argv[1], &opts);
	if (!obj) {
		fprintf(stderr, "libbpf_loader: open %s failed\n", argv[1]);
		return 1;
	}
	struct bpf_program *prog;
	if (argc > 3) /* else keep libbpf's default: every program but those in SEC("?...") */
		bpf_object__for_each_program(prog, obj)
			bpf_program__set_autoload(prog, wanted(bpf_program__name(prog), argc, argv));

	int err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "libbpf_loader: load %s failed: %d\n", argv[1], err);
		bpf_object__close(obj);
		return 1;
	}
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__autoload(prog))
			continue;
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len)) {
			fprintf(stderr, "libbpf_loader: info of %s failed\n", bpf_program__name(prog));
			bpf_object__close(obj);
			return 1;
		}
		printf("%s ", bpf_program__name(prog));
		for (int i = 0; i < 8; i++)
			printf("%02x", info.tag[i]);
		printf(" %u\n", info.xlated_prog_len / 8);
	}
	bpf_object__unpin_maps(obj, NULL);
	bpf_object__close(obj);
	return 0;
}
