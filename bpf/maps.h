/* SPDX-License-Identifier: MIT */
/* maps.h: the maps of the heimdall XDP program; names and layouts come from heimdall.h. */
#ifndef HEIMDALL_MAPS_H
#define HEIMDALL_MAPS_H

#include <linux/bpf.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>

#include "heimdall.h"

/*
 * Hot answers, written by userspace (promotion), read here; capacity set by the loader.
 * Two classes by size (heimdall.h): hot_slots, a table indexed by the key's hash that
 * userspace writes through its mapping, holds the common answer (struct hot_small in a
 * 384-byte struct hot_slot); hot_map the rest in 1,256 bytes, and any small answer whose
 * window of slots is full. hot_map is not preallocated: it holds the few large answers,
 * and a preallocated one would reserve a large room for every entry the capacity
 * allows. A key is in one of the two. The loader sizes hot_slots to the power of two at
 * or above the capacity (heimdall_config.hot_slot_mask).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, HOT_ENTRIES_DEFAULT);
	__type(key, __u32);
	__type(value, struct hot_slot);
} hot_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, HOT_ENTRIES_DEFAULT);
	__type(key, struct hot_key);
	__type(value, struct hot_value);
} hot_map SEC(".maps");

/*
 * Hit counter of each hot entry, one stripe per CPU: entry cpu * hot_capacity + hit_slot.
 * A plain ARRAY that userspace maps into memory, so it reads every counter without a
 * syscall (a per-CPU array can only be read through bpf(), and reading 30,000 of them
 * took milliseconds of a core the clients share); each CPU writes only its own stripe.
 * The loader sizes it to capacity x possible CPUs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, HOT_ENTRIES_DEFAULT);
	__type(key, __u32);
	__type(value, __u64);
} hot_hits SEC(".maps");

/* Per-CPU outcome counters (enum heimdall_stat), one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct heimdall_stats);
} stats SEC(".maps");

/* AF_XDP socket of each rx queue; an empty slot makes the redirect fall back to XDP_PASS. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, HEIMDALL_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

/* Settings userspace may change while attached (struct heimdall_runtime). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct heimdall_runtime);
} runtime SEC(".maps");

/* Access lists by source prefix (struct acl_key_*, struct acl_value); no match: ACL_REFUSE. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, HEIMDALL_ACL_MAX);
	__type(key, struct acl_key_v4);
	__type(value, struct acl_value);
} acl_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, HEIMDALL_ACL_MAX);
	__type(key, struct acl_key_v6);
	__type(value, struct acl_value);
} acl_v6 SEC(".maps");

/* The addresses this service answers on (kept by userspace as the interface's change);
 * a query to any other destination is transit and passes to the kernel untouched. A
 * short array compared in order: cheaper than a hash lookup for the few addresses an
 * interface has. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct heimdall_local);
} local SEC(".maps");

/* The IPv4 access lists by /16 block (see ACL16_ENTRIES), mmapped by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ACL16_ENTRIES);
	__type(key, __u32);
	__type(value, __u8);
} acl16 SEC(".maps");

/* Response rate-limit buckets (struct rrl_bucket), shared with userspace through mmap.
 * The loader sets the count (a power of two). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, RRL_BUCKETS_DEFAULT);
	__type(key, __u32);
	__type(value, struct rrl_bucket);
} rrl SEC(".maps");

/* Per-CPU scratch: room for moving the reply's headers when the frame has no tailroom,
 * and the copy of a small entry a hit is served from (heimdall.h, struct hot_slot). */
#define SCRATCH_LEN 512 /* grow_frame() masks with 511 */
struct scratch {
	__u8 bytes[SCRATCH_LEN];
	struct hot_small small;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

#endif /* HEIMDALL_MAPS_H */
