/**
 * The edge policy as it travels: a plain description (EdgeSetup) the main thread builds
 * from the config and hands to each worker, and buildPolicy(), which every thread runs
 * to get its own EdgePolicy over the one shared set of rate-limit buckets.
 */
import type { EdgeConfig } from '../config.js';
import { loadAddon, type NativeAddon } from '../native/addon.js';
import { parseCidr } from '../net/addr.js';
import { AccessList } from './acl.js';
import type { EdgePolicy } from './guard.js';
import { RRL_BUCKET_BYTES, RateLimiter, type RrlSettings } from './rrl.js';

export interface EdgeSetup {
  allow: string[];
  deny: string[];
  exempt: string[];
  rrl: RrlSettings;
  /** The XDP program's rrl map: its fd (valid in every thread of the process), size and seed. */
  rrlMapFd: number;
  rrlBuckets: number;
  rrlSeed: number;
  udpSize: number;
}

export function edgeSetup(edge: EdgeConfig, udpSize: number, rrlMap: { fd: number; buckets: number; seed: number }): EdgeSetup {
  return {
    allow: edge.allow.map((c) => c.text),
    deny: edge.deny.map((c) => c.text),
    exempt: edge.rrlExempt.map((c) => c.text),
    rrl: { ...edge.rrl },
    rrlMapFd: rrlMap.fd,
    rrlBuckets: rrlMap.buckets,
    rrlSeed: rrlMap.seed,
    udpSize,
  };
}

export function accessListOf(s: Pick<EdgeSetup, 'allow' | 'deny' | 'exempt'>): AccessList {
  return AccessList.build(s.allow.map(parseCidr), s.deny.map(parseCidr), s.exempt.map(parseCidr));
}

/** This thread's EdgePolicy: the access list, and the shared buckets mapped here. */
export function buildPolicy(s: EdgeSetup, addon: NativeAddon = loadAddon()): EdgePolicy {
  const region = addon.mapRegion(s.rrlMapFd, s.rrlBuckets * RRL_BUCKET_BYTES);
  return {
    acl: accessListOf(s),
    rrl: s.rrl.rate > 0 ? new RateLimiter(region, s.rrlBuckets, s.rrlSeed, s.rrl) : null,
    guardedPorts: new Set(Object.keys(addon.layout.guardedPorts).map(Number)),
    udpSize: s.udpSize,
  };
}
