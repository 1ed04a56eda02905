// SPDX-License-Identifier: MIT
/*
 * xdp_pass.bpf.c: a program that passes every frame. The lab attaches it to the client
 * end of a veth: a veth peer only accepts XDP_TX frames when it runs XDP itself.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("xdp")
int heimdall_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
