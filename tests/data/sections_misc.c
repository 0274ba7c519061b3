/* sections_misc.o: section names that map to program types and attach types: socket, xdp, tc, classifier,
 * cgroup_skb/ingress, kprobe/, fentry/ and lsm/ (recognised even where the kernel cannot attach them), and
 * one section name no loader knows (rawbpf_unknown/thing), which must be reported by name.
 */
#include "mini_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("socket")
int misc_socket(struct __sk_buff *skb)
{
	return 0;
}

SEC("xdp")
int misc_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int misc_tc(struct __sk_buff *skb)
{
	return 0;
}

SEC("classifier")
int misc_classifier(struct __sk_buff *skb)
{
	return 0;
}

SEC("cgroup_skb/ingress")
int misc_cgroup_skb(struct __sk_buff *skb)
{
	return 1;
}

SEC("kprobe/do_nanosleep")
int BPF_KPROBE(misc_kprobe)
{
	return 0;
}

SEC("fentry/do_nanosleep")
int BPF_PROG(misc_fentry)
{
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(misc_lsm, struct file *file)
{
	return 0;
}

SEC("rawbpf_unknown/thing")
int misc_unknown(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
