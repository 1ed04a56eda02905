// SPDX-License-Identifier: MIT
/*
 * heimdall.bpf.c: the XDP fast path of heimdall-xdp.
 *
 * A plain DNS query over UDP to a served port whose question is in the hot map, still
 * fresh and small enough for the client, is answered here: the query frame is rewritten
 * into the reply in place and sent back with XDP_TX. Every other DNS packet goes to the
 * AF_XDP socket of its rx queue (or, with none bound, to the kernel), and everything
 * that is not DNS to a served port goes to the kernel untouched. The contracts are in
 * docs/ARCHITECTURE.md; each outcome is counted in the per-CPU `stats` map.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "heimdall.h"
#include "csum.h"
#include "parsing.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Filled by the loader before load; these are the defaults. */
const volatile struct heimdall_config heimdall_cfg = {
	.ports = { bpf_htons(53) },
	.udp_size = 1232,
	.hash_seed = 0,
	.hot_capacity = HOT_ENTRIES_DEFAULT,
	.rrl_mask = RRL_BUCKETS_DEFAULT - 1,
};

#define DNS_HDR_LEN 12
#define DNS_QR 0x8000
#define DNS_OPCODE 0x7800
#define DNS_TC 0x0200
#define DNS_RD 0x0100
#define DNS_RA 0x0080
#define DNS_AD 0x0020
#define DNS_CD 0x0010
#define DNS_RCODE 0x000f
#define DNS_RCODE_REFUSED 5
#define DNS_TYPE_OPT 41
#define OPT_RR_LEN 11 /* root name, type, class, TTL, RDLENGTH */
#define EDNS_DO_HI 0x80
#define DNS_MIN_LIMIT 512
#define REPLY_HOP_LIMIT 64
#define NSEC_PER_SEC 1000000000ULL
#define MAX_REPLY_OFF 4096 /* no reply offset is larger; tells the verifier so */
/* bpf_ktime_get_coarse_ns() trails CLOCK_MONOTONIC by up to a tick (10 ms at HZ=100,
 * the slowest) and is cheaper than the precise clock's TSC read (docs/BENCHMARKS.md).
 * Entries stop being served this long before they expire, so none is ever served late. */
#define CLOCK_SLACK_NS (20 * 1000 * 1000ULL)

#ifndef barrier_var
#define barrier_var(var) asm volatile("" : "+r"(var))
#endif

struct dnshdr {
	__be16 id;
	__be16 flags;
	__be16 qdcount;
	__be16 ancount;
	__be16 nscount;
	__be16 arcount;
};

/* What the query parse found, for building the reply. */
struct query {
	__u32 qlen;      /* wire length of the question name */
	__u32 qsum;      /* checksum sum of the question bytes as sent */
	__u32 limit;     /* largest DNS payload this client accepts */
	__u16 qflags;    /* header flags of the query, host order */
	__u8 has_opt;
	__u8 do_bit;
};

static __always_inline void count(__u32 slot)
{
	__u32 zero = 0;
	struct heimdall_stats *s = bpf_map_lookup_elem(&stats, &zero);

	barrier_var(slot); /* check and index through one register */
	if (s && slot < STAT_MAX)
		s->slot[slot]++;
}

/* Hand the packet to userspace; with no socket on this queue it falls back to the kernel. */
static __always_inline int to_user(struct xdp_md *ctx, __u32 reason)
{
	int act;

	count(reason);
	act = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
	if (act == XDP_PASS)
		count(STAT_REDIRECT_FALLBACK);
	return act;
}

/*
 * ASCII upper case to lower case in all eight bytes of x at once (RFC 4343: ASCII
 * only). A byte is upper case when its high bit is clear and its low seven bits are in
 * 'A'..'Z'; adding 0x3f (0x25) to the low seven bits sets bit 7 exactly when they are
 * >= 'A' (> 'Z'), and no sum carries into the next byte. Label length bytes (at most
 * 63) are below 'A' and stay as they are.
 */
static __always_inline __u64 lower8(__u64 x)
{
	__u64 low7 = x & 0x7f7f7f7f7f7f7f7fULL;
	__u64 ge_a = low7 + 0x3f3f3f3f3f3f3f3fULL;
	__u64 gt_z = low7 + 0x2525252525252525ULL;
	__u64 upper = ge_a & ~gt_z & ~x & 0x8080808080808080ULL;

	return x | (upper >> 2); /* 0x80 >> 2 == 'a' - 'A' */
}

/*
 * Wire length of the question name of the DNS message at dns_off (root label
 * included), or minus the STAT_USER_* reason it cannot be answered here. Label lengths
 * only: at most HOT_NAME_MAX / 2 labels fit the limit. A global function, so the
 * verifier checks its loop once and its caller sees one result of unknown value rather
 * than one path per name length (which, followed by the word loop, was too many).
 */
__noinline int name_length(struct xdp_md *ctx, __u32 dns_off)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 off = 0;
	__u8 *name;

	if (!ctx || dns_off > 128)
		return -STAT_USER_SHORT;
	name = data + dns_off + DNS_HDR_LEN;
	for (__u32 i = 0; i < HOT_NAME_MAX / 2; i++) {
		if (off >= HOT_NAME_MAX)
			return -STAT_USER_NAME; /* longer than the hot map holds */
		__u8 *c = name + off;
		if ((void *)(c + 1) > data_end)
			return -STAT_USER_SHORT;
		__u8 len = *c;
		if (len == 0)
			return off + 1;
		if (len > 63)
			return -STAT_USER_NAME; /* compression pointer or extended label type */
		off += len + 1;
	}
	return -STAT_USER_NAME;
}

#ifndef OPT_OPTIONS_MAX
#define OPT_OPTIONS_MAX 8 /* options walked in one OPT; more go to userspace */
#endif
#define OPT_RDATA_MAX 1024 /* a longer OPT RDATA goes to userspace */

/*
 * Whether the OPT RDATA at packet offset off, len bytes, is a well-formed list of
 * options: each a 4-byte header (code, length) and its data, the last ending exactly at
 * len. Userspace answers a malformed list FORMERR (src/dns/opt.ts validOptions), so such
 * a query is never answered here; nor is one with more than OPT_OPTIONS_MAX options or
 * an RDATA over OPT_RDATA_MAX bytes (no client sends that many, and the walk is bounded).
 * Returns 0, or STAT_USER_EDNS. A global function, as name_length(), so the verifier
 * checks the loop once, and only queries that carry options pay for the call.
 */
__noinline int opt_options(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data, *data_end;
	__u32 pos = 0;

	if (!ctx || off > 512 || len > OPT_RDATA_MAX)
		return STAT_USER_EDNS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	for (__u32 i = 0; i < OPT_OPTIONS_MAX; i++) {
		if (pos == len)
			return 0;
		if (pos + 4 > len)
			return STAT_USER_EDNS; /* an option header cut short */
		/* A no-op mask the verifier sees as a bound (pos <= OPT_RDATA_MAX here). */
		__u64 at = off + pos;
		asm volatile("%[a] &= 2047" : [a] "+r"(at));
		__u8 *h = data + at;
		if ((void *)(h + 4) > data_end)
			return STAT_USER_EDNS;
		pos += 4 + (((__u32)h[2] << 8) | h[3]);
		if (pos > len)
			return STAT_USER_EDNS; /* option data running past the RDATA */
	}
	return pos == len ? 0 : STAT_USER_EDNS; /* more options than walked */
}

/*
 * Parse the DNS query at dns_off: fill the hot key, the lowercased name as words (for
 * the check against the entry) and what the reply needs. Returns 0 when the query is
 * admitted for the fast path, else the STAT_USER_* reason it goes to userspace.
 *
 * The name is walked label by label to find its length, then read eight bytes at a
 * time: each word is summed for the checksum (as sent), lowercased and hashed. A
 * byte-by-byte loop with the hash of a 136-byte key was most of the program's cost.
 */
static __always_inline int parse_query(struct xdp_md *ctx, __u32 dns_off, __u32 dns_len,
				       struct hot_key *key, __u64 *words, struct query *q)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct dnshdr *dh = data + dns_off;
	__u32 qlen;
	__u8 *dns, *name, *tail;

	if ((void *)(dh + 1) > data_end || dns_len < DNS_HDR_LEN)
		return STAT_USER_SHORT;
	q->qflags = bpf_ntohs(dh->flags);
	/* A plain query: QR=0, opcode QUERY, not truncated, no RCODE, one question, nothing else
	 * but possibly one OPT. Updates, notifies, responses and the rest go to userspace. */
	if (q->qflags & (DNS_QR | DNS_OPCODE | DNS_TC | DNS_RCODE))
		return STAT_USER_NOT_QUERY;
	if (dh->qdcount != bpf_htons(1) || dh->ancount || dh->nscount ||
	    bpf_ntohs(dh->arcount) > 1)
		return STAT_USER_NOT_QUERY;
	if (q->qflags & DNS_CD)
		key->flags = HOT_KEY_CD;

	dns = (__u8 *)dh;
	int len = name_length(ctx, dns_off);
	if (len < 0)
		return -len;
	if (len == 0 || len > HOT_NAME_MAX)
		return STAT_USER_NAME; /* cannot happen */
	/* A no-op mask the verifier sees as a bound (clang drops or moves a C one). */
	__u64 ql = len;
	asm volatile("%[q] &= 255" : [q] "+r"(ql));
	qlen = ql;
	name = (__u8 *)(dh + 1);
	if (DNS_HDR_LEN + qlen + 4 > dns_len)
		return STAT_USER_SHORT;
	tail = name + qlen;
	barrier_var(tail);
	if ((void *)(tail + 4) > data_end)
		return STAT_USER_SHORT;

	/* The words. The last one may run past QCLASS, where the packet can end: it is read
	 * as the eight bytes that end with QCLASS and shifted down instead. */
	__u64 h = heimdall_cfg.hash_seed, sum = 0;
	__u32 nwords = (qlen + 7) / 8;
	for (__u32 w = 0; w < HOT_NAME_MAX / 8; w++) {
		if (w >= nwords)
			break;
		__u32 o = DNS_HDR_LEN + w * 8;
		__u32 left = qlen - w * 8; /* name bytes from o on, at least 1 */
		__u64 x;
		if (left + 4 >= 8) {
			__u8 *p = dns + o;
			if ((void *)(p + 8) > data_end)
				return STAT_USER_SHORT;
			x = *(__u64 *)p;
		} else {
			__u32 e = DNS_HDR_LEN + qlen + 4 - 8; /* o - 3 .. o - 1 */
			if (e > MAX_REPLY_OFF || e >= o)
				return STAT_USER_SHORT; /* cannot happen; tells the verifier */
			__u8 *p = dns + e;
			if ((void *)(p + 8) > data_end)
				return STAT_USER_SHORT;
			x = *(__u64 *)p >> (8 * (o - e));
		}
		if (left < 8)
			x &= (1ULL << (8 * left)) - 1;
		sum += (x & 0xffffffff) + (x >> 32); /* little-endian words: swapped at the end */
		x = lower8(x);
		words[w & (HOT_NAME_MAX / 8 - 1)] = x;
		h = (h ^ x) * HOT_HASH_MUL1;
		h ^= h >> 29;
	}
	h ^= qlen;
	h *= HOT_HASH_MUL2;
	h ^= h >> 32;
	key->name_hash = h;
	__builtin_memcpy(&key->qtype, tail, 2);
	__builtin_memcpy(&key->qclass, tail + 2, 2);
	key->name_len = qlen;
	/* The name starts at an even offset (DNS offset 12); QTYPE and QCLASS at its length's parity. */
	q->qsum = csum_swap(csum_fold(sum)) + csum_u16_at(csum_be16(tail), qlen & 1) +
		  csum_u16_at(csum_be16(tail + 2), qlen & 1);
	q->qlen = qlen;
	q->limit = DNS_MIN_LIMIT;

	__u32 rest = dns_len - (DNS_HDR_LEN + qlen + 4);
	if (dh->arcount == 0)
		return rest == 0 ? 0 : STAT_USER_EDNS; /* trailing bytes after the question */

	/* The one additional record must be an EDNS0 OPT, version 0, owned by the root,
	 * ending exactly at the end of the message. Options (cookies, padding) are ignored
	 * once opt_options() has found them well formed. */
	__u8 *opt = tail + 4;
	barrier_var(opt); /* keep clang from reading through an older, shorter-checked copy */
	if ((void *)(opt + OPT_RR_LEN) > data_end || rest < OPT_RR_LEN)
		return STAT_USER_EDNS;
	if (opt[0] != 0 || opt[1] != 0 || opt[2] != DNS_TYPE_OPT)
		return STAT_USER_EDNS;
	if (opt[5] != 0 || opt[6] != 0)
		return STAT_USER_EDNS; /* extended RCODE in a query, or EDNS version > 0 (BADVERS) */
	if (OPT_RR_LEN + csum_be16(opt + 9) != rest)
		return STAT_USER_EDNS;
	if (rest != OPT_RR_LEN && opt_options(ctx, dns_off + DNS_HDR_LEN + qlen + 4 + OPT_RR_LEN, rest - OPT_RR_LEN))
		return STAT_USER_EDNS; /* malformed options: userspace answers FORMERR */
	__u32 udp_size = csum_be16(opt + 3);
	q->has_opt = 1;
	q->do_bit = (opt[7] & EDNS_DO_HI) ? 1 : 0;
	q->limit = udp_size > DNS_MIN_LIMIT ? udp_size : DNS_MIN_LIMIT;
	if (q->do_bit)
		key->flags |= HOT_KEY_DO;
	return 0;
}

/* Checksum sum of the OPT record we append, placed at an even or odd offset. */
static __always_inline __u32 opt_sum(__u32 udp_size, __u32 do_bit, __u32 odd)
{
	/* Even-aligned words: 0000 29UU UU00 00DD 0000 0000 */
	__u32 s = (DNS_TYPE_OPT << 8) + (udp_size >> 8) + ((udp_size & 0xff) << 8) + (do_bit ? EDNS_DO_HI : 0);

	return csum_u16_at(csum_fold(s), odd);
}

/*
 * Make the frame `delta` bytes longer for the reply, keeping its first `keep` bytes
 * (headers and question) at the front. Growing the tail is cheapest; a frame without
 * tailroom (veth hands native XDP the skb's own buffer) grows at the head instead,
 * and the kept bytes move to the new start. Returns 0, 1 when the frame is unchanged
 * and cannot grow, or -1 when it changed but the move failed.
 */
static __always_inline int grow_frame(struct xdp_md *ctx, int delta, __u32 keep)
{
	__u32 zero = 0;
	struct scratch *s;

	if (delta <= 0)
		return delta == 0 || bpf_xdp_adjust_tail(ctx, delta) == 0 ? 0 : 1;
	if (bpf_xdp_adjust_tail(ctx, delta) == 0)
		return 0;
	s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s || keep == 0 || keep >= SCRATCH_LEN)
		return 1;
	/* A no-op mask the verifier sees as a bound (clang would drop a C one). */
	__u64 k = keep;
	asm volatile("%[k] &= 511" : [k] "+r"(k));
	if (k == 0)
		return 1;
	if (bpf_xdp_load_bytes(ctx, 0, s->bytes, k))
		return 1;
	if (bpf_xdp_adjust_head(ctx, -delta))
		return 1;
	if (bpf_xdp_store_bytes(ctx, 0, s->bytes, k))
		return -1;
	return 0;
}

/*
 * Whole seconds in ns nanoseconds. Below 2^41 ns (36 minutes, most TTLs) a 32-bit
 * division does: ns / 10^9 = (ns / 2^9) / 1953125, floors nested exactly. A 64-bit
 * divide costs several times a 32-bit one on x86-64.
 */
static __always_inline __u64 seconds(__u64 ns)
{
	if (ns < (1ULL << 41))
		return (__u32)(ns >> 9) / 1953125u;
	return ns / NSEC_PER_SEC;
}

/*
 * A hot entry of either class: its head and where its TTL offsets and records are. The
 * room its class has for them goes beside it as constants at each call, so the verifier
 * checks every access against the class's own size.
 */
struct entry {
	const struct hot_head *v;
	const __u16 *ttl_off;
	const __u8 *records;
};

/*
 * Rewrite the admitted query into the reply for hot entry e and return XDP_TX; with no
 * entry (e->v NULL), into a reply with the question only and bare_flags (an RCODE, TC) in
 * its header: REFUSED, or the truncated reply a rate-limited response slips as. `stat`
 * is the outcome counted. Nothing here can fail for a valid entry; the checks only keep
 * a broken frame from ever leaving (it is dropped and counted).
 */
static __always_inline int answer(struct xdp_md *ctx, struct l4info *l4, struct query *q,
				  const struct entry *e, __u32 rr_max, __u32 records_max,
				  __u16 bare_flags, __u32 stat, __u64 now)
{
	const struct hot_head *v = e->v;
	__u32 l3_off = l4->l3_off, dns_off = l4->dns_off, qlen = q->qlen;
	__u32 rlen = v ? v->records_len : 0, rr = v ? v->rr_count : 0;
	__u32 rec_base = DNS_HDR_LEN + qlen + 4; /* DNS offset of the records */
	__u32 reply_len = rec_base + rlen + (q->has_opt ? OPT_RR_LEN : 0);
	__u32 udp_len = sizeof(struct udphdr) + reply_len;
	__u32 udp_size = heimdall_cfg.udp_size;
	__u64 sum = 0;
	void *data, *data_end;

	if (l3_off > 22 || dns_off > 128 || qlen > HOT_NAME_MAX || rlen > records_max || rr > rr_max)
		return XDP_DROP;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	int delta = (int)(dns_off + reply_len) - (int)(data_end - data);
	int grown = grow_frame(ctx, delta, dns_off + rec_base);
	if (grown > 0)
		return to_user(ctx, STAT_USER_RESIZE); /* unchanged on failure */
	if (grown < 0)
		goto drop;

	/* From here the frame is the reply's; a failed check drops it. */
	if (v && rlen && bpf_xdp_store_bytes(ctx, dns_off + rec_base, (void *)e->records, rlen))
		goto drop;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;

	/* TTLs count down from the moment the upstream answered. Each TTL at origin_ns came
	 * with the records, so it is read back from the frame, where it was just written:
	 * the entry keeps no array of them for a hit to touch. */
	__u64 elapsed = v && now > v->origin_ns ? seconds(now - v->origin_ns) : 0;
	for (__u32 j = 0; j < rr_max; j++) {
		if (j >= rr || !v)
			break;
		__u32 off = e->ttl_off[j];
		if (off > records_max - 4 || off + 4 > rlen)
			goto drop;
		__u32 poff = dns_off + rec_base + off;
		if (poff > MAX_REPLY_OFF)
			goto drop;
		__u8 *p = data + poff;
		barrier_var(p);
		if ((void *)(p + 4) > data_end)
			goto drop;
		__u32 ttl = bpf_ntohl(*(__be32 *)p); /* unaligned word access, as for the name words */
		__u32 left = ttl > elapsed ? ttl - (__u32)elapsed : 0;
		__be32 be = bpf_htonl(left);
		*(__be32 *)p = be;
		sum += csum_u32_at(left, (rec_base + off) & 1);
	}

	if (q->has_opt) {
		__u32 ooff = dns_off + rec_base + rlen;
		if (ooff > MAX_REPLY_OFF)
			goto drop;
		__u8 *o = data + ooff;
		barrier_var(o);
		if ((void *)(o + OPT_RR_LEN) > data_end)
			goto drop;
		o[0] = 0;
		o[1] = 0;
		o[2] = DNS_TYPE_OPT;
		o[3] = udp_size >> 8;
		o[4] = udp_size & 0xff;
		o[5] = 0;
		o[6] = 0;
		o[7] = q->do_bit ? EDNS_DO_HI : 0; /* RFC 3225: DO is copied into the response */
		o[8] = 0;
		o[9] = 0;
		o[10] = 0;
		sum += opt_sum(udp_size, q->do_bit, (rec_base + rlen) & 1);
	}

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		goto drop;
	struct dnshdr *dh = data + dns_off;
	if ((void *)(dh + 1) > data_end)
		goto drop;

	/* Header: ID kept; QR and RA set; RD and CD echoed; AA never (we are a cache);
	 * AD only for a client that asked for DNSSEC (RFC 6840 section 5.8). */
	__u16 flags = DNS_QR | DNS_RA | (q->qflags & (DNS_RD | DNS_CD));
	__u16 an = 0, ns = 0, ar = 0, rsum = 0;
	if (v) {
		flags |= v->flags & HOT_VAL_RCODE_MASK;
		if ((v->flags & HOT_VAL_AD) && (q->do_bit || (q->qflags & DNS_AD)))
			flags |= DNS_AD;
		an = v->ancount;
		ns = v->nscount;
		ar = v->arcount;
		rsum = v->records_csum;
	} else {
		flags |= bare_flags & (DNS_TC | DNS_RCODE);
	}
	__u16 arcount = ar + (q->has_opt ? 1 : 0);
	dh->flags = bpf_htons(flags);
	dh->qdcount = bpf_htons(1);
	dh->ancount = bpf_htons(an);
	dh->nscount = bpf_htons(ns);
	dh->arcount = bpf_htons(arcount);
	sum += bpf_ntohs(dh->id) + flags + 1 + an + ns + arcount;
	sum += q->qsum + rsum;

	/* Addresses swap; their sum, part of the pseudo-header, does not change. */
	/* Swapped through registers: stack is scarce (two frames share 512 bytes). */
	__u32 d4, s4;
	__u16 d2, s2;
	__builtin_memcpy(&d4, eth->h_dest, 4);
	__builtin_memcpy(&d2, eth->h_dest + 4, 2);
	__builtin_memcpy(&s4, eth->h_source, 4);
	__builtin_memcpy(&s2, eth->h_source + 4, 2);
	__builtin_memcpy(eth->h_dest, &s4, 4);
	__builtin_memcpy(eth->h_dest + 4, &s2, 2);
	__builtin_memcpy(eth->h_source, &d4, 4);
	__builtin_memcpy(eth->h_source + 4, &d2, 2);

	struct udphdr *udp;
	if (l4->ipv6) {
		struct ipv6hdr *ip6 = data + l3_off;
		if ((void *)(ip6 + 1) > data_end)
			goto drop;
		__u64 *sa = (__u64 *)&ip6->saddr, *da = (__u64 *)&ip6->daddr;
		__u64 t0 = sa[0], t1 = sa[1];
		sa[0] = da[0];
		sa[1] = da[1];
		da[0] = t0;
		da[1] = t1;
		ip6->payload_len = bpf_htons(udp_len);
		ip6->hop_limit = REPLY_HOP_LIMIT;
		const __u8 *ab = (const __u8 *)&ip6->saddr;
#pragma unroll
		for (int i = 0; i < 32; i += 2)
			sum += csum_be16(ab + i);
		udp = (void *)(ip6 + 1);
	} else {
		struct iphdr *ip = data + l3_off;
		if ((void *)(ip + 1) > data_end)
			goto drop;
		__be32 a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		/* Two header words change (the swapped addresses sum the same), so the checksum
		 * the parse verified is updated for them (RFC 1624) instead of recomputed. */
		__u16 old_len = bpf_ntohs(ip->tot_len), new_len = sizeof(struct iphdr) + udp_len;
		__u16 old_tp = (ip->ttl << 8) | ip->protocol, new_tp = (REPLY_HOP_LIMIT << 8) | ip->protocol;
		ip->tot_len = bpf_htons(new_len);
		ip->ttl = REPLY_HOP_LIMIT;
		__u32 hc = (__u16)~bpf_ntohs(ip->check);
		hc += (__u16)~old_len + new_len + (__u16)~old_tp + new_tp;
		ip->check = bpf_htons(~csum_fold(hc));
		const __u8 *ab = (const __u8 *)&ip->saddr;
#pragma unroll
		for (int i = 0; i < 8; i += 2)
			sum += csum_be16(ab + i);
		udp = (void *)(ip + 1);
	}
	if ((void *)(udp + 1) > data_end)
		goto drop;
	__be16 port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->len = bpf_htons(udp_len);
	/* Pseudo-header protocol and length, then the UDP header (length again, checksum 0).
	 * Computed from scratch, so a query that arrived with a partial (offloaded)
	 * checksum still gets a correct reply. */
	sum += IPPROTO_UDP + udp_len + bpf_ntohs(udp->source) + bpf_ntohs(udp->dest) + udp_len;
	__u16 check = ~csum_fold(sum);
	udp->check = bpf_htons(check ? check : 0xffff);

	if (v) {
		__u32 slot = bpf_get_smp_processor_id() * heimdall_cfg.hot_capacity + v->hit_slot;
		__u64 *hits = bpf_map_lookup_elem(&hot_hits, &slot);
		if (hits)
			(*hits)++;
	}
	count(stat);
	return XDP_TX;

drop:
	count(STAT_DROP_REWRITE);
	return XDP_DROP;
}

/* What rate limiting needs to know of the client: its network, for rrl_index(). */
struct limits {
	__u32 fam_len; /* family << 8 | prefix length; 0: not rate limited (exempt) */
	__u32 w0, w1;  /* the client network, big-endian words, host bits cleared */
	__u32 pad;
};

#define RRL_SEND 0
#define RRL_DROP 1
#define RRL_SLIP 2

/*
 * Charges one response of `cost` to bucket b at `now` (CLOCK_MONOTONIC >>
 * RRL_STAMP_SHIFT; see struct rrl_bucket). Returns RRL_SEND, or RRL_DROP / RRL_SLIP for
 * a limited response. Buckets are shared by every CPU and by userspace; every change to
 * a balance is an atomic add, so no response is ever lost from the count. The program is
 * built for the baseline BPF CPU (version 3, which has fetch-and-add and
 * compare-and-swap, made the whole fast path ~20 ns a packet slower under clang 14), so
 * the reads next to the adds are plain: two CPUs that read a bucket in the same instant
 * can both credit the time since its stamp (at most one stamp unit, ~1 ms, of
 * responses more) or both see credit for one response. Userspace does the same with a
 * real compare-and-swap on the stamp.
 */
static __always_inline int rrl_charge(struct rrl_bucket *b, __u32 now, __s32 cost, __s32 debt, __u32 slip)
{
	__u32 last = b->stamp;
	__u32 elapsed = now - last;

	/* A stamp a little ahead of `now` (userspace's clock is read more precisely than the
	 * coarse one here) gives no credit; any larger gap is time passed, however long (the
	 * credit is capped below); a bucket never stamped gets a full burst. heimdall.h
	 * (RRL_STAMP_AHEAD) says why the margin is what it is. */
	if (last == 0 || (elapsed != 0 && last - now >= RRL_STAMP_AHEAD)) {
		__u64 credit = last == 0 ? (__u64)RRL_BURST + debt : (__u64)elapsed << (RRL_STAMP_SHIFT - RRL_UNIT_SHIFT);
		b->stamp = now;
		if (credit > (__u64)RRL_BURST + debt)
			credit = (__u64)RRL_BURST + debt;
		__sync_fetch_and_add(&b->balance, (__s32)credit);
		__s32 bal = b->balance;
		if (bal > RRL_BURST)
			__sync_fetch_and_add(&b->balance, RRL_BURST - bal);
	}
	__s32 before = b->balance;
	__sync_fetch_and_add(&b->balance, -cost);
	if (before >= cost)
		return RRL_SEND;
	if (before - cost < -debt)
		__sync_fetch_and_add(&b->balance, cost); /* the debt stays within the window */
	__sync_fetch_and_add(&b->limited, 1);
	__u32 n = b->limited;
	return slip && n % slip == 0 ? RRL_SLIP : RRL_DROP;
}

static __always_inline int rrl_bucket_charge(const struct limits *lim, const struct heimdall_runtime *rt,
					     __u32 token, __u32 cost, __u32 now)
{
	__u32 idx = rrl_index(heimdall_cfg.rrl_seed, token, lim->fam_len, lim->w0, lim->w1, heimdall_cfg.rrl_mask);
	struct rrl_bucket *b = bpf_map_lookup_elem(&rrl, &idx);

	if (!b)
		return RRL_SEND;
	return rrl_charge(b, now, (__s32)cost, (__s32)rt->rrl_debt, rt->rrl_slip);
}

/* The verdict of rate limiting for one response of class `token` to this client. */
static __always_inline int rate_limit(const struct limits *lim, __u32 token, __u64 now_ns)
{
	__u32 zero = 0;
	struct heimdall_runtime *rt;

	if (!lim->fam_len)
		return RRL_SEND;
	rt = bpf_map_lookup_elem(&runtime, &zero);
	if (!rt || !rt->rrl_cost)
		return RRL_SEND;
	__u32 now = now_ns >> RRL_STAMP_SHIFT;
	int r = rrl_bucket_charge(lim, rt, token, rt->rrl_cost, now);
	if (rt->rrl_all_cost) {
		int all = rrl_bucket_charge(lim, rt, RRL_TOKEN_ALL, rt->rrl_all_cost, now);
		if (r == RRL_SEND)
			r = all;
	}
	return r;
}

static __always_inline int port_guarded(__u16 port)
{
	switch (port) {
#define HEIMDALL_GUARD_CASE(p, name) case p:
		HEIMDALL_GUARDED_PORTS(HEIMDALL_GUARD_CASE)
#undef HEIMDALL_GUARD_CASE
		return 1;
	}
	return 0;
}

static __always_inline int is_local4(const struct heimdall_local *lo, __u32 daddr)
{
	if (!lo)
		return 0;
	for (__u32 i = 0; i < HEIMDALL_LOCAL_MAX; i++) {
		if (i >= lo->n4)
			break;
		if (lo->v4[i] == daddr)
			return 1;
	}
	return 0;
}

static __always_inline int is_local6(const struct heimdall_local *lo, const struct in6_addr *d)
{
	if (!lo)
		return 0;
	__u32 d0 = d->in6_u.u6_addr32[0], d1 = d->in6_u.u6_addr32[1];
	__u32 d2 = d->in6_u.u6_addr32[2], d3 = d->in6_u.u6_addr32[3];
	for (__u32 i = 0; i < HEIMDALL_LOCAL_MAX; i++) {
		if (i >= lo->n6)
			break;
		if (lo->v6[i][0] == d0 && lo->v6[i][1] == d1 && lo->v6[i][2] == d2 && lo->v6[i][3] == d3)
			return 1;
	}
	return 0;
}

static __always_inline __u32 prefix_mask(__u32 bits)
{
	return bits >= 32 ? 0xffffffffu : bits == 0 ? 0 : ~(0xffffffffu >> bits);
}

/*
 * The edge decisions, from addresses and ports only, before any DNS is parsed: a
 * destination this service does not serve is transit (-STAT_PASS_NOT_LOCAL); sources
 * that cannot be clients and sources in the deny list are dropped (-STAT_DROP_*); a
 * DNS response is dropped. Otherwise returns the access-list action (ACL_ALLOW or
 * ACL_REFUSE) and fills lim for rate limiting.
 */
static __always_inline int check_edge(struct xdp_md *ctx, struct l4info *l4, struct heimdall_runtime *rt,
				      struct limits *lim)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct acl_value *acl;
	__u8 action = ACL_REFUSE;
	__u32 l3 = l4->l3_off;
	__u32 key = 0; /* one stack slot for every lookup key here: two frames share 512 bytes */
	struct heimdall_local *lo = bpf_map_lookup_elem(&local, &key);

	if (l3 > 22 || l4->dns_off > 128)
		return -STAT_PASS_MALFORMED; /* cannot happen: parse_to_dns bounds both */
	if (l4->ipv6) {
		struct ipv6hdr *ip6 = data + l3;
		if ((void *)(ip6 + 1) > data_end)
			return -STAT_PASS_MALFORMED;
		if (!is_local6(lo, &ip6->daddr))
			return -STAT_PASS_NOT_LOCAL;
		__u32 a0 = bpf_ntohl(ip6->saddr.in6_u.u6_addr32[0]);
		__u32 a1 = bpf_ntohl(ip6->saddr.in6_u.u6_addr32[1]);
		__u32 a2 = bpf_ntohl(ip6->saddr.in6_u.u6_addr32[2]);
		__u32 a3 = bpf_ntohl(ip6->saddr.in6_u.u6_addr32[3]);
		/* unspecified, loopback, IPv4-mapped (never on the wire) and multicast */
		if ((a0 | a1) == 0 && (a2 == 0 || a2 == 0xffff) && (a3 <= 1 || a2 == 0xffff))
			return -STAT_DROP_BAD_SOURCE;
		if ((a0 >> 24) == 0xff)
			return -STAT_DROP_BAD_SOURCE;
		struct acl_key_v6 k6 = { .prefixlen = 128 };
		__builtin_memcpy(k6.addr, &ip6->saddr, 16);
		acl = bpf_map_lookup_elem(&acl_v6, &k6);
		if (acl)
			action = acl->action;
		__u32 bits = rt ? rt->rrl_v6_prefix : 56;
		lim->fam_len = (6 << 8) | bits;
		lim->w0 = a0 & prefix_mask(bits);
		lim->w1 = bits > 32 ? a1 & prefix_mask(bits - 32) : 0;
	} else {
		struct iphdr *ip = data + l3;
		if ((void *)(ip + 1) > data_end)
			return -STAT_PASS_MALFORMED;
		if (!is_local4(lo, ip->daddr))
			return -STAT_PASS_NOT_LOCAL;
		__u32 a = bpf_ntohl(ip->saddr);
		__u8 top = a >> 24;
		/* 0/8 (this network), 127/8 (loopback), 224/4 (multicast), 240/4 and broadcast */
		if (top == 0 || top == 127 || top >= 224)
			return -STAT_DROP_BAD_SOURCE;
		key = a >> 16;
		__u8 *b16 = bpf_map_lookup_elem(&acl16, &key);
		if (b16 && !(*b16 & ACL_REFINE)) {
			action = *b16;
		} else {
			struct acl_key_v4 k4 = { .prefixlen = 32 };
			__builtin_memcpy(k4.addr, &ip->saddr, 4);
			acl = bpf_map_lookup_elem(&acl_v4, &k4);
			if (acl)
				action = acl->action;
		}
		__u32 bits = rt ? rt->rrl_v4_prefix : 24;
		lim->fam_len = (4 << 8) | bits;
		lim->w0 = a & prefix_mask(bits);
		lim->w1 = 0;
	}
	/* A no-op mask the verifier sees as a bound on the offset read back from the stack. */
	__u64 uoff = l4->dns_off - sizeof(struct udphdr);
	asm volatile("%[u] &= 255" : [u] "+r"(uoff));
	struct udphdr *udp = data + uoff;
	if ((void *)(udp + 1) > data_end)
		return -STAT_PASS_MALFORMED;
	if (port_guarded(bpf_ntohs(udp->source)))
		return -STAT_DROP_SOURCE_PORT;

	if ((action & ~ACL_RRL_EXEMPT) == ACL_DENY)
		return -STAT_DROP_DENIED;

	/* An answer sent to a server is never answered (two servers cannot loop). */
	__u8 *flags = data + uoff + sizeof(struct udphdr) + 2;
	if ((void *)(flags + 1) <= data_end && (*flags & 0x80))
		return -STAT_DROP_RESPONSE;

	if (action & ACL_RRL_EXEMPT)
		lim->fam_len = 0;
	return action & ~ACL_RRL_EXEMPT;
}

/*
 * Everything the query parse found, handed to serve(). serve() is a global function so
 * the verifier checks it once on its own instead of once per question length.
 */
struct fastpath {
	struct hot_key key;
	__u64 words[HOT_NAME_MAX / 8]; /* the lowercased name, zero padded */
	struct l4info l4;
	struct query q;
	struct limits lim;
};

/*
 * Serve the query from hot entry e of a class with room for name_max, rr_max and
 * records_max (constants: one copy per class), or send it to userspace.
 */
static __always_inline int serve_entry(struct xdp_md *ctx, struct fastpath *fp, const struct entry *e,
				       const __u64 *vname, __u32 name_max, __u32 rr_max, __u32 records_max)
{
	const struct hot_head *v = e->v;
	__u32 nwords = (fp->q.qlen + 7) / 8;
	for (__u32 w = 0; w < name_max / 8; w++) {
		if (w >= nwords)
			break;
		if (vname[w] != fp->words[w])
			return to_user(ctx, STAT_USER_NAME_MISMATCH);
	}
	/* The coarse clock trails the precise one by at most a tick; an entry stops being
	 * served CLOCK_SLACK_NS before it expires, so it is never served late. */
	__u64 now = bpf_ktime_get_coarse_ns();
	if (now + CLOCK_SLACK_NS >= v->expires_ns)
		return to_user(ctx, STAT_USER_EXPIRED); /* never served stale; userspace refreshes */
	if (v->records_len > records_max || v->rr_count > rr_max || fp->q.qlen > name_max)
		return to_user(ctx, STAT_USER_BAD_ENTRY);

	struct query *q = &fp->q;
	__u32 limit = q->limit < heimdall_cfg.udp_size ? q->limit : heimdall_cfg.udp_size;
	if (DNS_HDR_LEN + q->qlen + 4 + v->records_len + (q->has_opt ? OPT_RR_LEN : 0) > limit)
		return to_user(ctx, STAT_USER_OVERSIZE); /* userspace truncates with TC=1 */

	switch (rate_limit(&fp->lim, v->rrl_token, now)) {
	case RRL_SEND:
		return answer(ctx, &fp->l4, q, e, rr_max, records_max, 0, STAT_TX, now);
	case RRL_SLIP: {
		struct entry none = {};
		return answer(ctx, &fp->l4, q, &none, rr_max, records_max,
			      DNS_TC | (v->flags & HOT_VAL_RCODE_MASK), STAT_TX_SLIP, now);
	}
	default:
		count(STAT_DROP_RATE_LIMITED);
		return XDP_DROP;
	}
}

#define SLOT_ABSENT 0
#define SLOT_FOUND 1
#define SLOT_BUSY 2

/*
 * Finds key in its window of hot_slots and copies the entry into out, checked against
 * the slot's sequence (heimdall.h, struct hot_slot): SLOT_FOUND with out a consistent
 * copy, SLOT_BUSY when userspace was rewriting the slot, SLOT_ABSENT. Only the bytes up
 * to the end of the records are copied: a hit reads the lines it needs and no more. The
 * compiler barriers keep the entry's loads between the two reads of seq; the JIT keeps
 * their order and x86 does not reorder loads with loads, which is what the check needs.
 */
static __always_inline int slot_copy(const struct hot_key *key, struct hot_small *out)
{
	const __u64 *kw = (const __u64 *)key;
	__u32 mask = heimdall_cfg.hot_slot_mask;
	__u32 base = (__u32)key->name_hash;

	for (__u32 i = 0; i < HOT_SLOT_PROBE; i++) {
		__u32 idx = (base + i) & mask;
		struct hot_slot *sl = bpf_map_lookup_elem(&hot_slots, &idx);
		if (!sl)
			return SLOT_ABSENT;
		__u32 seq = *(volatile __u32 *)&sl->seq;
		asm volatile("" ::: "memory");
		const __u64 *sk = (const __u64 *)&sl->key;
		if (sk[0] != kw[0] || sk[1] != kw[1])
			continue;
		if (seq & 1)
			return SLOT_BUSY;
		__u32 used = __builtin_offsetof(struct hot_small, records) + sl->v.records_len;
		const __u64 *src = (const __u64 *)&sl->v;
		__u64 *dst = (__u64 *)out;
		for (__u32 w = 0; w < sizeof(struct hot_small) / 8; w++) {
			if (w * 8 >= used)
				break;
			dst[w] = src[w];
		}
		asm volatile("" ::: "memory");
		if (*(volatile __u32 *)&sl->seq != seq)
			return SLOT_BUSY;
		return SLOT_FOUND;
	}
	return SLOT_ABSENT;
}

/*
 * Look the query up in hot_slots, then in hot_map (heimdall.h: a key is in one of the
 * two), and serve it from what is found. A name longer than the small class holds is
 * never in hot_slots, so it skips that lookup.
 */
__noinline int serve(struct xdp_md *ctx, struct fastpath *fp)
{
	struct entry e;
	__u32 zero = 0;

	if (!fp)
		return XDP_PASS;
	if (fp->q.qlen <= HOT_SMALL_NAME_MAX) {
		struct scratch *sc = bpf_map_lookup_elem(&scratch_map, &zero);
		if (!sc)
			return to_user(ctx, STAT_USER_MISS);
		struct hot_small *s = &sc->small;
		int r = slot_copy(&fp->key, s);
		if (r == SLOT_BUSY)
			return to_user(ctx, STAT_USER_BUSY);
		if (r == SLOT_FOUND) {
			e.v = (const struct hot_head *)s;
			e.ttl_off = s->ttl_off;
			e.records = s->records;
			return serve_entry(ctx, fp, &e, (const __u64 *)s->name, HOT_SMALL_NAME_MAX,
					   HOT_SMALL_RR_MAX, HOT_SMALL_RECORDS_MAX);
		}
	}
	struct hot_value *v = bpf_map_lookup_elem(&hot_map, &fp->key);
	if (!v)
		return to_user(ctx, STAT_USER_MISS);
	e.v = (const struct hot_head *)v;
	e.ttl_off = v->ttl_off;
	e.records = v->records;
	return serve_entry(ctx, fp, &e, (const __u64 *)v->name, HOT_NAME_MAX, HOT_RR_MAX, HOT_RECORDS_MAX);
}

/*
 * A source the access lists neither allow nor deny: a plain query gets REFUSED (rate
 * limited as an error), anything else is dropped, since an error reply to what is not
 * recognisably a query is how two services start a loop.
 */
__noinline int refuse(struct xdp_md *ctx, struct fastpath *fp)
{
	if (!fp)
		return XDP_PASS;
	if (fp->l4.dns_off > 128) {
		count(STAT_DROP_REFUSED_JUNK);
		return XDP_DROP;
	}
	if (parse_query(ctx, fp->l4.dns_off, fp->l4.dns_len, &fp->key, fp->words, &fp->q)) {
		count(STAT_DROP_REFUSED_JUNK);
		return XDP_DROP;
	}
	__u64 now = bpf_ktime_get_coarse_ns();
	struct entry none = {};
	switch (rate_limit(&fp->lim, RRL_TOKEN_ERROR, now)) {
	case RRL_SEND:
		return answer(ctx, &fp->l4, &fp->q, &none, 0, 0, DNS_RCODE_REFUSED, STAT_TX_REFUSED, now);
	case RRL_SLIP:
		return answer(ctx, &fp->l4, &fp->q, &none, 0, 0, DNS_TC | DNS_RCODE_REFUSED, STAT_TX_SLIP, now);
	default:
		count(STAT_DROP_RATE_LIMITED);
		return XDP_DROP;
	}
}

SEC("xdp")
int heimdall_xdp(struct xdp_md *ctx)
{
	struct fastpath fp = {};
	__u32 zero = 0;
	int r;

	r = parse_to_dns(ctx, &heimdall_cfg, &fp.l4);
	if (r != PARSE_DNS) {
		count(r);
		return XDP_PASS;
	}

	struct heimdall_runtime *rt = bpf_map_lookup_elem(&runtime, &zero);
	r = check_edge(ctx, &fp.l4, rt, &fp.lim);
	if (r < 0) {
		count(-r);
		return -r == STAT_PASS_NOT_LOCAL ? XDP_PASS : XDP_DROP;
	}
	/* A query to one of our unicast addresses in a broadcast or multicast Ethernet frame
	 * (destination group bit set) is not one a host takes (RFC 1122 3.3.6), and a reply
	 * built by swapping the MACs would come from ff:ff:ff:ff:ff:ff. */
	struct ethhdr *eth = (void *)(long)ctx->data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end || (eth->h_dest[0] & 1)) {
		count(STAT_DROP_L2_GROUP);
		return XDP_DROP;
	}
	if (r == ACL_REFUSE)
		return refuse(ctx, &fp);

	if (rt && rt->answers_off)
		return to_user(ctx, STAT_USER_DISABLED);

	if (fp.l4.dns_off > 128)
		return to_user(ctx, STAT_USER_SHORT);
	r = parse_query(ctx, fp.l4.dns_off, fp.l4.dns_len, &fp.key, fp.words, &fp.q);
	if (r)
		return to_user(ctx, r);
	/* A query without RD asks us not to recurse: userspace answers REFUSED, as it does for
	 * every such query (no cache snooping: docs/CORE.md, "Queries without RD"). */
	if (!(fp.q.qflags & DNS_RD))
		return to_user(ctx, STAT_USER_NO_RD);
	return serve(ctx, &fp);
}
