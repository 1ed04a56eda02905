/* SPDX-License-Identifier: MIT */
/*
 * heimdall.h: the one description of everything the XDP program and userspace share.
 *
 * The addon includes this header and hands the numbers below (sizes, offsets, counter
 * slots, map names) to TypeScript at run time, so no layout is ever kept by hand twice.
 * Every struct uses fixed-width fields with explicit padding, so the C compiler of the
 * BPF object (clang -target bpf) and of the addon (g++ x86_64) agree byte for byte;
 * static asserts at the bottom pin the sizes.
 */
#ifndef HEIMDALL_H
#define HEIMDALL_H

#include <linux/types.h>

/* Names the loader looks things up by. */
#define HEIMDALL_PROG_NAME "heimdall_xdp" /* BPF object names are at most 15 characters */
#define HEIMDALL_MAP_HOT "hot_map"
#define HEIMDALL_MAP_HOT_SLOTS "hot_slots"
#define HEIMDALL_MAP_HITS "hot_hits"
#define HEIMDALL_MAP_STATS "stats"
#define HEIMDALL_MAP_XSKS "xsks_map"
#define HEIMDALL_MAP_RUNTIME "runtime"
#define HEIMDALL_MAP_ACL4 "acl_v4"
#define HEIMDALL_MAP_ACL6 "acl_v6"
#define HEIMDALL_MAP_LOCAL "local"
#define HEIMDALL_MAP_ACL16 "acl16"
#define HEIMDALL_MAP_RRL "rrl"
#define HEIMDALL_CONFIG_VAR "heimdall_cfg"

/* Longest question name (wire form, root label included) the fast path answers.
 * Longer names are served by userspace. A multiple of 8: the name is read in words. */
#ifndef HOT_NAME_MAX
#define HOT_NAME_MAX 128
#endif
/* Bytes of answer+authority+additional records one hot entry can hold. */
#ifndef HOT_RECORDS_MAX
#define HOT_RECORDS_MAX 1024
#endif
/* Records (and so TTL fields) one hot entry can hold; a multiple of 4 and
 * HOT_RECORDS_MAX a multiple of 8 keep hot_value free of implicit padding. */
#ifndef HOT_RR_MAX
#define HOT_RR_MAX 32
#endif
/* The small class of hot entries (struct hot_small): answers whose name, records and
 * record count fit these go to the hot_slots table, the rest to hot_map. A multiple of 8,
 * of 4 and of 8 as above. Sized for the common answer: a name of real length, a few
 * address records. */
#ifndef HOT_SMALL_NAME_MAX
#define HOT_SMALL_NAME_MAX 64
#endif
#ifndef HOT_SMALL_RR_MAX
#define HOT_SMALL_RR_MAX 8
#endif
#ifndef HOT_SMALL_RECORDS_MAX
#define HOT_SMALL_RECORDS_MAX 192
#endif
/* Default capacity of the hot map; the loader sets the real one before load. */
#ifndef HOT_ENTRIES_DEFAULT
#define HOT_ENTRIES_DEFAULT 8192
#endif
/* AF_XDP sockets: one per rx queue. */
#ifndef HEIMDALL_MAX_QUEUES
#define HEIMDALL_MAX_QUEUES 64
#endif
#define HEIMDALL_MAX_PORTS 4
/* Default buckets of the response rate limiter (a power of two); the loader sets the real count. */
#ifndef RRL_BUCKETS_DEFAULT
#define RRL_BUCKETS_DEFAULT 65536
#endif
/* Entries of each access-list trie; addresses served per family. */
#define HEIMDALL_ACL_MAX 4096
#define HEIMDALL_LOCAL_MAX 16

/* hot_key.flags: the query's DO and CD bits (an answer fetched with CD=1 is served to CD=1 queries only) */
#define HOT_KEY_DO 0x01
#define HOT_KEY_CD 0x02

/* hot_value.flags: what the reply header takes from the cached answer. */
#define HOT_VAL_RCODE_MASK 0x000f
#define HOT_VAL_AD 0x0020 /* upstream set AD; echoed only to DO or AD queries */

/*
 * Lookup key of the hot map: a keyed 64-bit hash of the lowercased question name with
 * the fields that select the answer. A 16-byte key is what makes the lookup cheap: the
 * map hashes and compares the whole key on every query, and a key holding the name
 * itself (136 bytes) cost more than the rest of the fast path together. The name is
 * kept in the value and compared there, so a hash collision can only miss, never serve
 * the wrong answer (userspace refuses to write a second name under a taken key).
 *
 * name_hash is hot_name_hash() below, seeded with heimdall_config.hash_seed (random per
 * load, so the names that collide cannot be known in advance), over the lowercased wire
 * name read as little-endian 64-bit words, the last one zero padded:
 *   h = seed; for each word w: h = (h ^ w) * HOT_HASH_MUL1; h ^= h >> 29
 *   then h ^= name_len; h *= HOT_HASH_MUL2; h ^= h >> 32
 */
#define HOT_HASH_MUL1 0x9e3779b97f4a7c15ULL
#define HOT_HASH_MUL2 0xff51afd7ed558ccdULL
struct hot_key {
	__u64 name_hash;
	__u16 qtype;    /* network byte order, as on the wire */
	__u16 qclass;   /* network byte order */
	__u8 flags;     /* HOT_KEY_DO, HOT_KEY_CD */
	__u8 name_len;  /* wire length of name, root label included */
	__u8 pad[2];    /* always zero */
};

/*
 * A cached answer in the form the XDP program writes it.
 * records[] holds the answer, authority and additional records (never the OPT) in wire
 * form, valid at DNS offset 12 + name_len + 4 of the reply, each TTL field holding the
 * record's TTL at origin_ns (at most the entry's lifetime): the program copies the
 * records into the reply, reads each TTL back from the frame at ttl_off[i] and writes it
 * less the seconds since origin_ns. records_csum is the 16-bit ones' complement sum of
 * records[] with every TTL field zero, as it sits in the reply (the parity of its offset
 * from the UDP header is fixed by the key's name length), so the UDP checksum is
 * computed without reading the frame again.
 *
 * Two classes by size, in two maps with one key: most answers are a short name and a
 * few records, and one fixed room for the largest (1,384 bytes before the split) made
 * every entry span 22 cache lines and every hit touch lines far apart. A small entry is 312 bytes and a hit
 * on it reads three lines of its slot; the program looks in hot_slots first, then in
 * hot_map. Userspace keeps a key in one of the two (docs/XDP.md, "The hot entry's
 * layout"). The fields are in the order a hit reads them: header, name, TTL offsets,
 * records. The TTLs live in the records rather than in an array of their own, one
 * line less per hit.
 */
#define HOT_VALUE_HEAD                                                                           \
	__u64 origin_ns;  /* CLOCK_MONOTONIC when the upstream answered */                        \
	__u64 expires_ns; /* CLOCK_MONOTONIC after which the entry is never served */             \
	__u32 hit_slot;   /* this entry's counter in hot_hits (per-CPU stripes), owned by userspace */ \
	__u16 flags;      /* HOT_VAL_RCODE_MASK | HOT_VAL_AD */                                    \
	__u16 ancount;                                                                           \
	__u16 nscount;                                                                           \
	__u16 arcount;    /* without the OPT, which the program adds when the query had one */    \
	__u16 records_len;                                                                       \
	__u16 rr_count;   /* entries used in ttl_off[] */                                          \
	__u16 records_csum;                                                                      \
	__u16 pad;                                                                               \
	__u32 rrl_token;  /* rate-limit class of this answer (rrl_index() below), from userspace */

/* The fields both classes start with, for code that serves either. */
struct hot_head {
	HOT_VALUE_HEAD
};

/* The large class, in hot_map: any answer that fits HOT_NAME_MAX, HOT_RR_MAX, HOT_RECORDS_MAX. */
struct hot_value {
	HOT_VALUE_HEAD
	__u8 name[HOT_NAME_MAX];   /* lowercased wire name, zero padded: checked against the query */
	__u16 ttl_off[HOT_RR_MAX]; /* offset of each TTL field inside records[] */
	__u8 records[HOT_RECORDS_MAX];
};

/* The small class, in hot_slots: the same fields with room for a common answer only. */
struct hot_small {
	HOT_VALUE_HEAD
	__u8 name[HOT_SMALL_NAME_MAX];
	__u16 ttl_off[HOT_SMALL_RR_MAX];
	__u8 records[HOT_SMALL_RECORDS_MAX];
};

/*
 * The table of small entries (map hot_slots, an mmapable ARRAY): a key's entry sits at
 * slot (name_hash & hot_slot_mask) or one of the HOT_SLOT_PROBE - 1 slots after it
 * (wrapping), placed there by userspace through its mapping of the array; a small answer
 * whose window is full goes to hot_map instead, in the large layout. Indexed directly:
 * a lookup reads the slot's first line, which holds the sequence, the key and the
 * entry's head, where the kernel's hash table read a bucket and then an element whose
 * value started mid-line (docs/BENCHMARKS.md, "The generator's CPU, symbol by symbol").
 * A slot is 384 bytes, six lines, and the array's values start on a page, so a slot's
 * lines are its own: the name is the second line and the TTL offsets and the first 48
 * bytes of records the third.
 *
 * An array value is rewritten in place, so reads are checked the way a seqlock's are:
 * userspace makes seq odd, writes key and entry, then makes seq even again (the next
 * even number); the program reads seq, the key, copies the entry out, and reads seq
 * again, and serves the copy only if seq was even and unchanged (else the query goes to
 * userspace, STAT_USER_BUSY). An empty slot has an all-zero key (name_len 0 is no name).
 */
#ifndef HOT_SLOT_PROBE
#define HOT_SLOT_PROBE 4
#endif
#define HOT_SLOT_SIZE 384
struct hot_slot {
	__u32 seq;
	__u32 pad;
	struct hot_key key;
	struct hot_small v;
	__u8 pad2[HOT_SLOT_SIZE - 24 - (40 + HOT_SMALL_NAME_MAX + 2 * HOT_SMALL_RR_MAX + HOT_SMALL_RECORDS_MAX)];
};

/* Load-time settings, a `const volatile` global the loader fills before load. */
struct heimdall_config {
	__u16 ports[HEIMDALL_MAX_PORTS]; /* served UDP ports, network order, 0 = unused */
	__u16 udp_size;                  /* our EDNS UDP size, and the largest reply payload */
	__u16 pad[3];
	__u64 hash_seed;                 /* seed of hot_key.name_hash, random per load */
	__u32 hot_capacity;              /* entries of the hot map: the stride of hot_hits */
	__u32 rrl_mask;                  /* buckets of the rrl map minus one (a power of two) */
	__u32 rrl_seed;                  /* seed of rrl_index(), random per load */
	__u32 hot_slot_mask;             /* slots of hot_slots minus one (a power of two) */
};

/*
 * Runtime settings, entry 0 of the runtime ARRAY map, written by userspace while
 * attached. All zero: XDP answers on, rate limiting off.
 */
struct heimdall_runtime {
	__u32 answers_off;     /* 1: answer nothing, redirect every query (--no-xdp-answers) */
	__u32 rrl_slip;        /* every slip-th rate-limited response goes out truncated (TC=1); 0: none */
	__u32 rrl_cost;        /* credit one response costs (RRL units): RRL_BURST / responses-per-second; 0: RRL off */
	__u32 rrl_all_cost;    /* the same for the ceiling over all answers to a prefix; 0: none */
	__u32 rrl_debt;        /* the window: a bucket's balance goes no lower than minus this */
	__u32 rrl_v4_prefix;   /* client network bits counted together, 1..32 */
	__u32 rrl_v6_prefix;   /* 1..64 */
	__u32 pad;
};

/*
 * Access lists: LPM tries keyed by source prefix. The longest matching prefix decides;
 * no match means ACL_REFUSE. Userspace folds --allow, --deny and --rrl-exempt into one
 * set of prefixes whose values already hold the longest-match answer of each list.
 */
struct acl_key_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};
struct acl_key_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};
#define ACL_REFUSE 0 /* answered REFUSED (rate limited), never from the cache */
#define ACL_ALLOW 1  /* served */
#define ACL_DENY 2   /* dropped without a reply */
#define ACL_RRL_EXEMPT 0x80 /* flag: responses to this source are not rate limited */
#define ACL_REFINE 0x40     /* acl16 only: a longer prefix lies inside this /16: ask acl_v4 */
struct acl_value {
	__u8 action; /* ACL_REFUSE, ACL_ALLOW or ACL_DENY, | ACL_RRL_EXEMPT */
	__u8 pad[3];
};

/*
 * The IPv4 access lists as a table of the 65,536 /16 blocks (acl16, indexed by the
 * source's first two bytes): each holds the acl_value action of its whole block, or
 * ACL_REFINE when a longer prefix lies inside it and the trie must decide. One array
 * read instead of a trie walk for every source under a prefix of /16 or shorter (all of
 * the default list); userspace fills it through mmap. The kernel lays array values out
 * 8 bytes apart.
 */
#define ACL16_ENTRIES 65536
#define ACL16_STRIDE 8

/* The addresses served (entry 0 of the local ARRAY map), compared in order. */
struct heimdall_local {
	__u32 n4;                          /* entries used in v4 */
	__u32 n6;
	__u32 v4[HEIMDALL_LOCAL_MAX];      /* network order */
	__u32 v6[HEIMDALL_LOCAL_MAX][4];   /* network order, as struct in6_addr */
};

/*
 * Response rate limiting. One bucket per (client network, response class), found by
 * rrl_index(); buckets are shared by whatever hashes to them, which can only make a
 * limit stricter, never looser (no eviction an attacker could force). A bucket's balance
 * is credit in time: time adds credit one for one, up to RRL_BURST (a second's worth of
 * responses), and each response costs rrl_cost; a response that finds less than its cost
 * is limited, and the debt it leaves is bounded by rrl_debt (the window), so a flood
 * stays limited until it has been quiet for that long. The map is mmapped by userspace,
 * which charges the same buckets for the answers it sends.
 *
 * Every field is 32 bits, so userspace updates them with plain 32-bit atomics (64-bit
 * ones cost JavaScript a BigInt per operation). Balances count 2^10 ns units (~1 µs; a
 * second is RRL_BURST of them, a 600 s window still fits); stamps count 2^20 ns units
 * (~1 ms) of CLOCK_MONOTONIC, wrapping after 52 days.
 *
 * A stamp is "ahead" of now (no credit, stamp kept) only when it leads by fewer than
 * RRL_STAMP_AHEAD units (~4.3 s): userspace stamps with the precise clock, the program
 * reads the coarse one, which trails it by at most a tick (10 ms at HZ=100), and a CPU
 * may read now just before another stamps. Any other gap is time that passed and earns
 * full credit (capped at the burst), so a bucket idle for weeks is not read as "ahead"
 * by a signed difference (which it was from 2^31 units, ~26 days, on) and held limited.
 * The 32-bit stamp still aliases at multiples of 52 days: a bucket idle that long plus a
 * little gets only the little as credit, so it is limited for at most the window.
 */
#define RRL_UNIT_SHIFT 10
#define RRL_STAMP_SHIFT 20
#define RRL_STAMP_AHEAD 4096 /* 2^32 - RRL_STAMP_AHEAD < now - stamp: the stamp is ahead */
#define RRL_BURST 976562 /* 1e9 ns >> RRL_UNIT_SHIFT */
#define RRL_WINDOW_MAX 600
struct rrl_bucket {
	__s32 balance; /* credit in 2^10 ns units; may be negative (debt) */
	__u32 stamp;   /* CLOCK_MONOTONIC >> RRL_STAMP_SHIFT of the last credit; 0: never */
	__u32 limited; /* responses limited so far: every slip-th is sent truncated */
	__u32 pad;
};

/* Response classes (the high byte of a token; answers carry their own token). */
#define RRL_CLASS_ANSWER 0x01 /* positive answer: token mixes qname and qtype */
#define RRL_CLASS_NODATA 0x02 /* qname and qtype */
#define RRL_CLASS_NXDOMAIN 0x03 /* the zone (SOA owner): a random-subdomain flood is one class */
#define RRL_CLASS_ERROR 0x04 /* REFUSED, FORMERR, SERVFAIL, NOTIMP: one class per client network */
#define RRL_CLASS_ALL 0x05   /* the optional ceiling over all responses */
#define RRL_TOKEN_ERROR (RRL_CLASS_ERROR << 24)
#define RRL_TOKEN_ALL (RRL_CLASS_ALL << 24)

/*
 * The bucket of (token, client network): a seeded 32-bit multiply-xorshift over the
 * token, the family and prefix length, and the network's first two 32-bit words
 * (big-endian; IPv4 uses the first). userspace (src/edge/rrl.ts) computes the same.
 */
#define RRL_MUL1 0x9e3779b1u
#define RRL_MUL2 0x85ebca6bu
static inline __u32 rrl_mix(__u32 h, __u32 w)
{
	h ^= w;
	h *= RRL_MUL1;
	return h ^ (h >> 16);
}
static inline __u32 rrl_index(__u32 seed, __u32 token, __u32 fam_len, __u32 w0, __u32 w1, __u32 mask)
{
	__u32 h = rrl_mix(rrl_mix(rrl_mix(rrl_mix(seed, token), fam_len), w0), w1);
	h ^= h >> 13;
	h *= RRL_MUL2;
	h ^= h >> 16;
	return h & mask;
}

/*
 * Source ports no DNS client sends from: services that answer any datagram (echo,
 * daytime, quote, chargen, time) or are classic reflection amplifiers (portmap, NTP,
 * NetBIOS, SNMP, CLDAP, SSDP, mDNS, memcached). A "query" from one of them is a spoofed
 * reflection attempt or a loop in the making; it is dropped. docs/XDP.md says why for
 * each. X(port, name)
 */
#define HEIMDALL_GUARDED_PORTS(X) \
	X(0, "zero")              \
	X(7, "echo")              \
	X(13, "daytime")          \
	X(17, "qotd")             \
	X(19, "chargen")          \
	X(37, "time")             \
	X(111, "portmap")         \
	X(123, "ntp")             \
	X(137, "netbios-ns")      \
	X(161, "snmp")            \
	X(389, "cldap")           \
	X(1900, "ssdp")           \
	X(5353, "mdns")           \
	X(11211, "memcached")

/*
 * Per-CPU counters, one slot per outcome: every packet lands in exactly one of the
 * TX / TX_* / PASS_* / USER_* / DROP_* slots, so totals are sums and the hot path touches one
 * counter. REDIRECT_FALLBACK is counted on top when a packet meant for userspace found
 * no AF_XDP socket on its queue and went to the kernel instead.
 * X(name, description): the one list from which the enum and the addon's names come.
 */
#define HEIMDALL_STATS(X)                                                                  \
	X(TX, "answered from the hot map with XDP_TX")                                     \
	X(PASS_NOT_IP, "not IPv4 or IPv6: passed to the kernel")                           \
	X(PASS_VLAN_DEPTH, "more than two VLAN tags: passed to the kernel")                \
	X(PASS_MALFORMED, "truncated or inconsistent L2-L4 headers: passed to the kernel") \
	X(PASS_FRAGMENT, "IPv4 fragment: passed to the kernel")                            \
	X(PASS_IP_OPTIONS, "IPv4 header with options: passed to the kernel")               \
	X(PASS_IPV6_EXT, "IPv6 extension header: passed to the kernel")                    \
	X(PASS_NOT_UDP, "not UDP: passed to the kernel")                                   \
	X(PASS_NOT_PORT, "UDP to a port not served: passed to the kernel")                 \
	X(PASS_NOT_LOCAL, "to an address this service does not serve (transit): passed to the kernel") \
	X(DROP_BAD_SOURCE, "from a broadcast, multicast, loopback or unspecified address: dropped") \
	X(DROP_SOURCE_PORT, "from a source port used for reflection (0, 7, 19, ...): dropped") \
	X(DROP_DENIED, "source in the deny list: dropped")                                 \
	X(DROP_RESPONSE, "a DNS response (QR=1) sent to the server: dropped")              \
	X(DROP_L2_GROUP, "query in a broadcast or multicast Ethernet frame: dropped")     \
	X(TX_REFUSED, "source not in the allow list: REFUSED sent with XDP_TX")            \
	X(DROP_REFUSED_JUNK, "source not in the allow list, and not a plain query: dropped") \
	X(DROP_RATE_LIMITED, "response over the rate limit: dropped")                     \
	X(TX_SLIP, "response over the rate limit: truncated reply (TC=1) sent instead")    \
	X(USER_DISABLED, "XDP answers switched off: sent to userspace")                    \
	X(USER_SHORT, "DNS header or question cut short: sent to userspace")               \
	X(USER_NOT_QUERY, "not a plain query (QR, opcode, TC, counts): sent to userspace") \
	X(USER_NAME, "compressed, malformed or over-long name: sent to userspace")         \
	X(USER_NO_RD, "recursion not desired (RD=0): sent to userspace, which refuses it") \
	X(USER_EDNS, "additional data other than one EDNS0 OPT: sent to userspace")        \
	X(USER_MISS, "no hot entry: sent to userspace")                                    \
	X(USER_NAME_MISMATCH, "hot key held by another name (hash collision): sent to userspace") \
	X(USER_EXPIRED, "hot entry expired: sent to userspace")                            \
	X(USER_OVERSIZE, "answer over the client's limit: sent to userspace")              \
	X(USER_BAD_ENTRY, "hot entry fields out of range: sent to userspace")              \
	X(USER_BUSY, "hot entry being rewritten by userspace: sent to userspace")          \
	X(USER_RESIZE, "frame could not be resized: sent to userspace")                    \
	X(DROP_REWRITE, "reply could not be finished after resize: dropped")               \
	X(REDIRECT_FALLBACK, "meant for userspace, no socket bound: kernel got it")

enum heimdall_stat {
#define HEIMDALL_STAT_ENUM(name, desc) STAT_##name,
	HEIMDALL_STATS(HEIMDALL_STAT_ENUM)
#undef HEIMDALL_STAT_ENUM
	STAT_MAX
};

struct heimdall_stats {
	__u64 slot[STAT_MAX];
};

#if HOT_NAME_MAX % 8 != 0 || HOT_NAME_MAX > 248
#error "HOT_NAME_MAX must be a multiple of 8 that fits name_len"
#endif
#if HOT_SMALL_NAME_MAX % 8 != 0 || HOT_SMALL_NAME_MAX > HOT_NAME_MAX || HOT_SMALL_RR_MAX % 4 != 0 || \
	HOT_SMALL_RR_MAX > HOT_RR_MAX || HOT_SMALL_RECORDS_MAX % 8 != 0 || HOT_SMALL_RECORDS_MAX > HOT_RECORDS_MAX
#error "the small class must be a smaller room of the same shape"
#endif

#ifdef __cplusplus
static_assert(sizeof(struct hot_key) == 16, "hot_key layout");
static_assert(sizeof(struct hot_value) == 40 + HOT_NAME_MAX + 2 * HOT_RR_MAX + HOT_RECORDS_MAX, "hot_value layout");
static_assert(sizeof(struct hot_small) == 40 + HOT_SMALL_NAME_MAX + 2 * HOT_SMALL_RR_MAX + HOT_SMALL_RECORDS_MAX, "hot_small layout");
static_assert(sizeof(struct hot_head) == 40, "hot_head layout");
static_assert(sizeof(struct hot_slot) == HOT_SLOT_SIZE && HOT_SLOT_SIZE % 64 == 0 && __builtin_offsetof(struct hot_slot, v) + 40 == 64, "hot_slot layout: whole lines, the head ends the first");
static_assert(sizeof(struct heimdall_config) == 40, "heimdall_config layout");
static_assert(sizeof(struct heimdall_runtime) == 32, "heimdall_runtime layout");
static_assert(sizeof(struct rrl_bucket) == 16, "rrl_bucket layout");
static_assert(sizeof(struct heimdall_local) == 8 + 20 * HEIMDALL_LOCAL_MAX, "heimdall_local layout");
#else
_Static_assert(sizeof(struct hot_key) == 16, "hot_key layout");
_Static_assert(sizeof(struct hot_value) == 40 + HOT_NAME_MAX + 2 * HOT_RR_MAX + HOT_RECORDS_MAX, "hot_value layout");
_Static_assert(sizeof(struct hot_small) == 40 + HOT_SMALL_NAME_MAX + 2 * HOT_SMALL_RR_MAX + HOT_SMALL_RECORDS_MAX, "hot_small layout");
_Static_assert(sizeof(struct hot_head) == 40, "hot_head layout");
_Static_assert(sizeof(struct hot_slot) == HOT_SLOT_SIZE && HOT_SLOT_SIZE % 64 == 0 && __builtin_offsetof(struct hot_slot, v) + 40 == 64, "hot_slot layout: whole lines, the head ends the first");
_Static_assert(sizeof(struct heimdall_config) == 40, "heimdall_config layout");
_Static_assert(sizeof(struct heimdall_runtime) == 32, "heimdall_runtime layout");
_Static_assert(sizeof(struct rrl_bucket) == 16, "rrl_bucket layout");
_Static_assert(sizeof(struct heimdall_local) == 8 + 20 * HEIMDALL_LOCAL_MAX, "heimdall_local layout");
#endif

#endif /* HEIMDALL_H */
