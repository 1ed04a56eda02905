/**
 * A worker thread for the shared cache's concurrency tests: random inserts, refreshes,
 * lock-free hit-path reads, deletes and touches over one SharedCache, checking every
 * reply it gets for a torn read, until `ops` are done or the stop flag is set.
 *
 * workerData: { layout, seed, ops, keys, maxRecords, control (Int32Array: [stop,
 * progress per worker...]), index, writesOnly }.
 * Posts { torn, inserted: number (inserts that returned a slot), busy, hits, misses, ops }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedCache, type SharedCacheLayout } from '../../src/engine/shared-cache.js';
import { MessageView } from '../../src/dns/view.js';
import { keyHash } from '../../src/dns/key.js';
import { MAX_KEY_LEN } from '../../src/dns/constants.js';
import { keyOf, prng, queryFor, synth, versionInReply, versionOf } from './shared-cache-ops.js';

interface Init {
  layout: SharedCacheLayout;
  seed: number;
  ops: number;
  keys: number;
  maxRecords: number;
  control: Int32Array;
  index: number;
  writesOnly: boolean;
  nowNs: number;
}

const init = workerData as Init;
const cache = SharedCache.attach(init.layout);
const rnd = prng(init.seed);
const v = new MessageView();
const key = new Uint8Array(MAX_KEY_LEN);
const out = new Uint8Array(2048);
const opts = { udpSize: 1232, tcp: true };
const queries = new Map<number, Uint8Array>();
let torn = 0;
let inserted = 0;
let busy = 0;
let done = 0;
const now = init.nowNs;

for (; done < init.ops && Atomics.load(init.control, 0) === 0; done++) {
  const i = Math.floor(rnd() * init.keys);
  const r = rnd();
  if (init.writesOnly || r < 0.45) {
    const ver = (init.index << 12) | (done & 0xfff);
    const s = cache.insert(synth(i, ver, 1 + Math.floor(rnd() * init.maxRecords), 300, now), now);
    if (s >= 0) inserted++;
    else if (s === -2) busy++;
  } else if (r < 0.9) {
    let q = queries.get(i);
    if (q === undefined) queries.set(i, (q = queryFor(i, v, key)));
    else v.parse(q, 0, q.length, key);
    const n = cache.reply(v, key, v.keyLen, keyHash(key, 0, v.keyLen), now, out, 0, opts);
    if (n > 0 && versionInReply(i, out, n) < 0) torn++;
  } else if (r < 0.95) {
    const a = cache.peek(keyOf(i));
    if (a !== undefined && versionOf(i, a) < 0) torn++;
  } else if (r < 0.98) {
    cache.delete(keyOf(i));
  } else {
    const s = cache.find(keyOf(i), keyOf(i).length);
    if (s >= 0) cache.touch(s, 3);
  }
  if ((done & 255) === 0) Atomics.store(init.control, 1 + init.index, done);
}
Atomics.store(init.control, 1 + init.index, done);
parentPort!.postMessage({ torn, inserted, busy, hits: cache.reads.hits, misses: cache.reads.misses, ops: done });
