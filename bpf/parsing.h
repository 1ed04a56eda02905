/* SPDX-License-Identifier: MIT */
/*
 * parsing.h: Ethernet / VLAN / IPv4 / IPv6 / UDP parsing for the XDP program.
 *
 * parse_to_dns() walks the headers with bounds checks and either finds a UDP datagram to
 * one of the served ports (returns PARSE_DNS and fills struct l4info) or names the
 * reason the packet belongs to the kernel stack (a STAT_PASS_* slot).
 */
#ifndef HEIMDALL_PARSING_H
#define HEIMDALL_PARSING_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "heimdall.h"
#include "csum.h"

#define PARSE_DNS (-1)

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

struct l4info {
	__u32 l3_off;  /* offset of the IP header */
	__u32 dns_off; /* offset of the DNS message (just past the UDP header) */
	__u32 dns_len; /* DNS message length, from the UDP length */
	__u32 ipv6;    /* 1 for IPv6 */
};

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

static __always_inline int port_served(const volatile struct heimdall_config *cfg, __u16 port)
{
#pragma unroll
	for (int i = 0; i < HEIMDALL_MAX_PORTS; i++)
		if (cfg->ports[i] != 0 && cfg->ports[i] == port)
			return 1;
	return 0;
}

static __always_inline int ipv6_is_extension(__u8 nh)
{
	switch (nh) {
	case 0:   /* hop-by-hop */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		return 1;
	}
	return 0;
}

static __always_inline int parse_to_dns(struct xdp_md *ctx, const volatile struct heimdall_config *cfg,
					struct l4info *info)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__u32 ip_payload_len;
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return STAT_PASS_MALFORMED; /* runt frame */
	proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_tag *tag = data + off;
		if ((void *)(tag + 1) > data_end)
			return STAT_PASS_MALFORMED;
		proto = tag->proto;
		off += sizeof(*tag);
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return STAT_PASS_VLAN_DEPTH; /* a third tag: not a layout we answer */

	info->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 ihl_bytes;

		if ((void *)(ip + 1) > data_end)
			return STAT_PASS_MALFORMED;
		if (ip->version != 4 || ip->ihl < 5)
			return STAT_PASS_MALFORMED;
		if (ip->ihl > 5)
			return STAT_PASS_IP_OPTIONS; /* options (source routes, ...) are the kernel's business */
		if (csum_ipv4_header((const __u8 *)ip) != bpf_ntohs(ip->check))
			return STAT_PASS_MALFORMED; /* the kernel drops it and counts it */
		ihl_bytes = sizeof(*ip);
		if (bpf_ntohs(ip->tot_len) < ihl_bytes + sizeof(struct udphdr))
			return STAT_PASS_MALFORMED;
		if (data + off + bpf_ntohs(ip->tot_len) > data_end)
			return STAT_PASS_MALFORMED; /* IP length beyond the frame */
		if (ip->frag_off & bpf_htons(0x3fff))
			return STAT_PASS_FRAGMENT; /* MF set or non-zero offset */
		if (ip->protocol != IPPROTO_UDP)
			return STAT_PASS_NOT_UDP;
		ip_payload_len = bpf_ntohs(ip->tot_len) - ihl_bytes;
		off += ihl_bytes;
		info->ipv6 = 0;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return STAT_PASS_MALFORMED;
		if (ip6->version != 6)
			return STAT_PASS_MALFORMED;
		if (ip6->nexthdr != IPPROTO_UDP)
			return ipv6_is_extension(ip6->nexthdr) ? STAT_PASS_IPV6_EXT : STAT_PASS_NOT_UDP;
		ip_payload_len = bpf_ntohs(ip6->payload_len);
		off += sizeof(*ip6);
		if (data + off + ip_payload_len > data_end)
			return STAT_PASS_MALFORMED; /* payload length beyond the frame (or a jumbogram) */
		info->ipv6 = 1;
	} else {
		return STAT_PASS_NOT_IP;
	}

	/* off is at most 14 + 8 + 60: keep the verifier's view of it bounded. */
	if (off > 128)
		return STAT_PASS_MALFORMED;
	struct udphdr *udp = data + off;
	if ((void *)(udp + 1) > data_end)
		return STAT_PASS_MALFORMED;
	if (!port_served(cfg, udp->dest))
		return STAT_PASS_NOT_PORT;
	__u32 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) || udp_len > ip_payload_len)
		return STAT_PASS_MALFORMED;

	info->dns_off = off + sizeof(*udp);
	info->dns_len = udp_len - sizeof(*udp);
	return PARSE_DNS;
}

#endif /* HEIMDALL_PARSING_H */
