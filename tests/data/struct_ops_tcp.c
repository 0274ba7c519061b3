/* struct_ops_tcp.o: the Reno-like congestion control of struct_ops_reno.h as a `.struct_ops` map, registered
 * by a map update of key 0 and unregistered by deleting it. Its name is "rawbpf_reno".
 */
#include "struct_ops_reno.h"

SEC(".struct_ops")
struct tcp_congestion_ops rawbpf_reno = {
	.init = (void *)rb_init,
	.ssthresh = (void *)rb_ssthresh,
	.cong_avoid = (void *)rb_cong_avoid,
	.undo_cwnd = (void *)rb_undo_cwnd,
	.name = "rawbpf_reno",
};
