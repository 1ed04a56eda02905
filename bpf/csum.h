/* SPDX-License-Identifier: MIT */
/*
 * csum.h: Internet checksum arithmetic (RFC 1071) for the XDP program.
 *
 * Sums are kept as 32-bit accumulators of big-endian 16-bit words and folded once at
 * the end. A run of bytes that starts at an odd offset from the start of the checksummed
 * data contributes its even-aligned sum byte-swapped (RFC 1071 section 2(B)), which is
 * how a value is added wherever it lands in the reply.
 */
#ifndef HEIMDALL_CSUM_H
#define HEIMDALL_CSUM_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

static __always_inline __u16 csum_swap(__u16 folded)
{
	return (__u16)((folded << 8) | (folded >> 8));
}

/* Sum of a 16-bit value (host order) placed at an even (odd == 0) or odd offset. */
static __always_inline __u32 csum_u16_at(__u16 v, __u32 odd)
{
	return odd ? csum_swap(v) : v;
}

/* Sum of a 32-bit value (host order) placed at an even or odd offset. */
static __always_inline __u32 csum_u32_at(__u32 v, __u32 odd)
{
	__u16 s = csum_fold((__u64)(v >> 16) + (v & 0xffff));
	return odd ? csum_swap(s) : s;
}

/* Sum of two bytes read from the frame as one big-endian word. */
static __always_inline __u32 csum_be16(const __u8 *p)
{
	return ((__u32)p[0] << 8) | p[1];
}

/* IPv4 header checksum over the fixed 20-byte header (the fast path never sees options). */
static __always_inline __u16 csum_ipv4_header(const __u8 *h)
{
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < 20; i += 2)
		if (i != 10) /* the checksum field itself */
			sum += csum_be16(h + i);
	return (__u16)~csum_fold(sum);
}

#endif /* HEIMDALL_CSUM_H */
