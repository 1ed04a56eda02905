// SPDX-License-Identifier: MIT
/*
 * lab_firewall.bpf.c: a stand-in for an operator's XDP firewall, for the lab test of
 * heimdall behind one (test/lab/dispatcher.test.ts). It drops UDP over IPv4 from one
 * source address (FIREWALL_BLOCKED_V4, 198.18.0.66 unless -D says otherwise) and passes
 * everything else, counting what it dropped.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef FIREWALL_BLOCKED_V4
#define FIREWALL_BLOCKED_V4 0xc6120042 /* 198.18.0.66 */
#endif

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Frames dropped, in slot 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} fw_dropped SEC(".maps");

SEC("xdp")
int lab_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u32 zero = 0;

	/* Not IPv4, or too short to tell: not ours to judge. */
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_UDP || ip->saddr != bpf_htonl(FIREWALL_BLOCKED_V4))
		return XDP_PASS;
	__u64 *n = bpf_map_lookup_elem(&fw_dropped, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	return XDP_DROP;
}
