/* SPDX-License-Identifier: MIT */
/* maps.h: the maps of the heimdall XDP program; names and layouts come from heimdall.h. */
#ifndef HEIMDALL_MAPS_H
#define HEIMDALL_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "heimdall.h"

/* Hot answers, written by userspace (promotion), read here. Capacity set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
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

/* Per-CPU scratch for moving the reply's headers when the frame has no tailroom. */
#define SCRATCH_LEN 512 /* grow_frame() masks with 511 */
struct scratch {
	__u8 bytes[SCRATCH_LEN];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

#endif /* HEIMDALL_MAPS_H */
