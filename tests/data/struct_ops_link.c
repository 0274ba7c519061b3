/* struct_ops_link.o: the Reno-like congestion control of struct_ops_reno.h as a `.struct_ops.link` map
 * (BPF_F_LINK): registered by a BPF_LINK_CREATE that owns the registration. Its name is "rawbpf_renolk".
 */
#include "struct_ops_reno.h"

SEC(".struct_ops.link")
struct tcp_congestion_ops rawbpf_renolk = {
	.init = (void *)rb_init,
	.ssthresh = (void *)rb_ssthresh,
	.cong_avoid = (void *)rb_cong_avoid,
	.undo_cwnd = (void *)rb_undo_cwnd,
	.name = "rawbpf_renolk",
};
