// SPDX-License-Identifier: MIT
/*
 * reflector.bpf.c: the benchmark's ceiling. A DNS query over UDP to port 53 (IPv4
 * without options, IPv6 without extension headers, at most one 802.1Q tag) is sent back
 * where it came from with XDP_TX: MACs, addresses and ports swapped, QR set, checksums
 * right. Everything else is passed. It answers nothing a real server would: it measures
 * what this machine's veth and XDP_TX can carry, with as little work per packet as a
 * correct reply allows.
 *
 * The UDP checksum is computed in full over the datagram: a frame sent by a local stack
 * through a veth carries only a partial checksum (offload), so an incremental update of
 * it would be wrong and the client's kernel would drop the reply.
 *
 * Built with -DREFLECT_LOOKUP (reflector_lookup.bpf.o, the bench's `lookup-floor`), it
 * also reads one cache line per query from a table of REFLECT_LOOKUP_LINES lines (2 MiB),
 * chosen by a hash of the name's first 16 bytes: the least memory traffic a program
 * that answers from a table of the Zipf round's size can cause (one line per distinct
 * name, no bucket array, no header), with the same distribution over lines as the
 * names' (docs/BENCHMARKS.md, "The generator's CPU, symbol by symbol"). Entries of
 * REFLECT_LOOKUP_STRIDE lines, of which the first REFLECT_LOOKUP_READS are read, give
 * the floor of larger entries and tables ("The XDP program, line by line"), e.g.
 *   make -B -C bpf reflector_lookup.bpf.o EXTRA_CFLAGS='-DREFLECT_LOOKUP_LINES=196608
 *     -DREFLECT_LOOKUP_STRIDE=6 -DREFLECT_LOOKUP_READS=3'
 * for three lines of 384-byte entries over 12 MiB; `make -B -C bpf reflector_lookup.bpf.o`
 * afterwards puts the bench's floor back (the variant is newer than its source, so a
 * plain make keeps it).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "csum.h"

/* Longest DNS message reflected; longer ones are passed (queries are far shorter). */
#ifndef REFLECT_DNS_MAX
#define REFLECT_DNS_MAX 512
#endif
#define DNS_PORT 53
#define DNS_HEADER_LEN 12
#define DNS_QR 0x80

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#ifdef REFLECT_LOOKUP
#ifndef REFLECT_LOOKUP_LINES
#define REFLECT_LOOKUP_LINES 32768 /* the 30,000 entries of the bench's hot map */
#endif
#ifndef REFLECT_LOOKUP_STRIDE
#define REFLECT_LOOKUP_STRIDE 1 /* lines an entry spans; REFLECT_LOOKUP_LINES / it a power of two */
#endif
#ifndef REFLECT_LOOKUP_READS
#define REFLECT_LOOKUP_READS 1 /* lines read of the entry, from its first */
#endif
_Static_assert(REFLECT_LOOKUP_LINES % REFLECT_LOOKUP_STRIDE == 0 &&
		       ((REFLECT_LOOKUP_LINES / REFLECT_LOOKUP_STRIDE) & (REFLECT_LOOKUP_LINES / REFLECT_LOOKUP_STRIDE - 1)) == 0,
	       "REFLECT_LOOKUP_LINES / REFLECT_LOOKUP_STRIDE entries, a power of two");
_Static_assert(REFLECT_LOOKUP_READS >= 1 && REFLECT_LOOKUP_READS <= REFLECT_LOOKUP_STRIDE, "an entry's lines are read, no more");
struct line {
	__u64 w[8];
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REFLECT_LOOKUP_LINES);
	__type(key, __u32);
	__type(value, struct line);
} lookup_table SEC(".maps");

/* Reads the table's line for the name at q (16 bytes of it, or fewer when the frame ends). */
static __always_inline void touch_line(const __u8 *q, const void *data_end)
{
	__u64 a = 0, b = 0;

	if ((const void *)(q + 16) <= data_end) {
		a = *(const __u64 *)q;
		b = *(const __u64 *)(q + 8);
	} else if ((const void *)(q + 8) <= data_end) {
		a = *(const __u64 *)q;
	}
	__u64 h = (a * 0x9e3779b97f4a7c15ULL) ^ (b * 0xc2b2ae3d27d4eb4fULL);
	__u32 first = (__u32)((h ^ (h >> 29)) & (REFLECT_LOOKUP_LINES / REFLECT_LOOKUP_STRIDE - 1)) * REFLECT_LOOKUP_STRIDE;
	for (__u32 i = 0; i < REFLECT_LOOKUP_READS; i++) {
		__u32 idx = first + i;
		struct line *l = bpf_map_lookup_elem(&lookup_table, &idx);
		if (l) {
			__u64 w = *(volatile __u64 *)&l->w[0];
			asm volatile("" : : "r"(w)); /* the load stays */
		}
	}
}
#endif

/* Sum of the big-endian 16-bit words of p[0, len), len at most REFLECT_DNS_MAX + 8. */
static __always_inline __u64 sum_words(const __u8 *p, __u32 len, const void *data_end)
{
	__u64 sum = 0;

	for (__u32 i = 0; i < (REFLECT_DNS_MAX + 8) / 2; i++) {
		if (2 * i + 1 >= len)
			break;
		const __u8 *w = p + 2 * i;
		if ((const void *)(w + 2) > data_end)
			return sum;
		sum += csum_be16(w);
	}
	if (len & 1) {
		const __u8 *last = p + (len & 0x3ff) - 1;
		if ((const void *)(last + 1) <= data_end)
			sum += (__u32)last[0] << 8;
	}
	return sum;
}

static __always_inline void swap_bytes(__u8 *a, __u8 *b, int n)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (i >= n)
			break;
		__u8 t = a[i];
		a[i] = b[i];
		b[i] = t;
	}
}

SEC("xdp")
int reflector_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__u64 sum = 0;
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS; /* runt */
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		__be16 *tag = data + off;
		if ((void *)(tag + 2) > data_end)
			return XDP_PASS;
		proto = tag[1];
		off += 4;
	}

	struct udphdr *udp;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
			return XDP_PASS; /* options, other protocols, fragments: not a query we reflect */
		__be32 a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a; /* the header checksum does not change when the addresses swap */
		sum += (bpf_ntohl(ip->saddr) >> 16) + (bpf_ntohl(ip->saddr) & 0xffff) +
		       (bpf_ntohl(ip->daddr) >> 16) + (bpf_ntohl(ip->daddr) & 0xffff);
		udp = (void *)(ip + 1);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		if (ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS; /* extension headers, other protocols */
		swap_bytes((__u8 *)&ip6->saddr, (__u8 *)&ip6->daddr, 16);
#pragma unroll
		for (int i = 0; i < 32; i += 2)
			sum += csum_be16((const __u8 *)&ip6->saddr + i);
		udp = (void *)(ip6 + 1);
	} else {
		return XDP_PASS; /* not IP */
	}

	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(DNS_PORT))
		return XDP_PASS; /* not DNS */
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp) + DNS_HEADER_LEN || ulen > sizeof(*udp) + REFLECT_DNS_MAX ||
	    (void *)udp + ulen > data_end)
		return XDP_PASS; /* too short to be a query, too long to bother, or inconsistent */
	__u8 *dns = (void *)(udp + 1);
	if ((void *)(dns + DNS_HEADER_LEN) > data_end || (dns[2] & DNS_QR))
		return XDP_PASS; /* never reflect an answer */
#ifdef REFLECT_LOOKUP
	touch_line(dns + DNS_HEADER_LEN, data_end);
#endif

	swap_bytes(eth->h_dest, eth->h_source, ETH_ALEN);
	__be16 port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	dns[2] |= DNS_QR;
	udp->check = 0;
	sum += IPPROTO_UDP + ulen + sum_words((const __u8 *)udp, ulen, data_end);
	__u16 check = ~csum_fold(sum);
	udp->check = bpf_htons(check ? check : 0xffff);
	return XDP_TX;
}
