/**
 * npm run bench:xdp-zipf: nanoseconds per packet of an XDP hit when the lookups are
 * spread over many hot entries, by BPF_PROG_TEST_RUN. A single repeated frame keeps its
 * entry in L1 and hides the hot map's cache and TLB footprint; here the runs cycle
 * through a batch of BATCH frames whose names are Zipf draws (s = 1, as the benchmark's
 * mix) over every entry of a map holding N entries, so the footprint shows the way it
 * does under real traffic.
 *
 * Each map holds N answers of the benchmark's shape (one A record, h<i>.lab.example),
 * written in a shuffled order so the hottest names are not neighbours in memory by
 * accident. Cases: the hot set (one frame repeated), then the Zipf batch over each size.
 * Rounds alternate the cases (and the objects, when OBJECTS names several: label=path,
 * comma separated) so drift on a busy machine hits them alike; the median of the rounds
 * is reported with its min-max, and ratios are taken within a round.
 *
 *   SIZES=1000,20000,60000 ROUNDS=5 RUNS=100000 BATCH=16384 npx tsx scripts/bench/xdp-zipf.ts
 */
import { FastPath, XdpAction } from '../../src/xdp/fastpath.js';
import { createRequire } from 'node:module';
import { BPF_OBJECT_PATH, loadAddon, type NativeAddon } from '../../src/native/addon.js';
import { buildFrame } from '../../test/helpers/frames.js';
import { query, response, cached } from '../../test/helpers/dns.js';
import { operatorMessage } from '../../src/errors.js';
import { AccessList, parseAclList } from '../../src/edge/acl.js';
import { parseAddr } from '../../src/net/addr.js';
import { mulberry32, zipfSampler } from './rng.js';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const RUNS = Number(process.env.RUNS ?? 100_000);
const BATCH = Number(process.env.BATCH ?? 16_384);
const SIZES = (process.env.SIZES ?? '1000,20000,60000').split(',').map(Number);
// label=object.bpf.o[@addon.node]: another build's object with the addon built beside it
// (a layout change needs both), so an old and a new layout run side by side in one process.
const OBJECTS = (process.env.OBJECTS ?? `current=${BPF_OBJECT_PATH}`).split(',').map((s) => {
  const [label, rest] = s.split('=') as [string, string];
  const [path, addonPath] = rest.split('@') as [string, string | undefined];
  const addon = addonPath ? (createRequire(import.meta.url)(addonPath) as NativeAddon) : loadAddon();
  return { label, path, addon };
});
const MISSES = process.env.MISSES !== '0';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function zipfDraws(n: number, count: number, seed: number): number[] {
  const draw = zipfSampler(n, 1, mulberry32(seed));
  return Array.from({ length: count }, draw);
}

const name = (i: number): string => `h${i}.lab.example`;

function openFilled(path: string, addon: NativeAddon, n: number): FastPath {
  const fp = FastPath.open({ objectPath: path, hotEntries: n + 64 }, addon);
  fp.setAccessList(AccessList.build(parseAclList('default,198.18.0.0/15,fd00::/8'), parseAclList('')));
  fp.setLocalAddresses(['198.18.0.1', 'fd00::1'].map((a) => parseAddr(a)!));
  const now = fp.nowNs();
  const order = Array.from({ length: n }, (_, i) => i);
  const rnd = mulberry32(7);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  for (const i of order) {
    fp.put(cached(response(name(i), 'A', { answers: [{ type: 'A', name: name(i), ttl: 3600, data: `198.18.${100 + Math.floor(i / 250)}.${1 + (i % 250)}` }] }), now));
  }
  return fp;
}

function main(): void {
  const frameOf = new Map<number, Buffer>();
  const frame = (i: number): Buffer => {
    let f = frameOf.get(i);
    if (!f) frameOf.set(i, (f = buildFrame(query(name(i), 'A', { edns: { udpSize: 1232 } }))));
    return f;
  };
  // Every frame of a batch is its own copy, so every batch reads the same amount of
  // userspace memory whatever the number of distinct names in it.
  const batch = (ids: number[]): Buffer[] => ids.map((i) => Buffer.from(frame(i)));
  const cases: { label: string; fp: FastPath; size: number; frames: Buffer | Buffer[]; action: number }[] = [];
  for (const o of OBJECTS) {
    const biggest = Math.max(...SIZES);
    for (const n of SIZES) {
      const fp = openFilled(o.path, o.addon, n);
      if (n === biggest) cases.push({ label: `${o.label} hot set (1 frame), ${n} entries`, fp, size: n, frames: frame(0), action: XdpAction.TX });
      cases.push({ label: `${o.label} Zipf over ${n} entries`, fp, size: n, frames: batch(zipfDraws(n, BATCH, 11)), action: XdpAction.TX });
      // Names not in the map: the lookup walks the bucket only (no entry, no counter).
      if (MISSES) cases.push({ label: `${o.label} misses, Zipf over ${n} absent names`, fp, size: n, frames: batch(zipfDraws(n, BATCH, 13).map((i) => n + 64 + i)), action: XdpAction.PASS });
    }
  }
  const samples = cases.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    cases.forEach((c, i) => {
      const res = c.fp.benchRun(c.frames, RUNS);
      if (res.actions[c.action] !== RUNS) throw new Error(`${c.label}: ${RUNS - res.actions[c.action]!} runs ended otherwise than expected`);
      samples[i]!.push(res.meanNs);
    });
  }
  const base = samples[0]!;
  console.log(`XDP hit, BPF_PROG_TEST_RUN, ${ROUNDS} rounds x ${RUNS} runs, batch ${BATCH} Zipf draws (ns/packet)`);
  console.log('| case | median | min-max | ratio to first case (median, min-max of per-round ratios) |');
  console.log('|---|---:|---:|---:|');
  cases.forEach((c, i) => {
    const s = samples[i]!;
    const ratios = s.map((x, r) => x / base[r]!);
    console.log(`| ${c.label} | ${median(s).toFixed(0)} | ${Math.min(...s).toFixed(0)}-${Math.max(...s).toFixed(0)} | ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}) |`);
  });
  // Each object against the first, case by case, as ratios taken within a round.
  const perObject = cases.length / OBJECTS.length;
  if (OBJECTS.length > 1) {
    console.log(`\n| case | ${OBJECTS.slice(1).map((o) => `${o.label} / ${OBJECTS[0]!.label} (median, min-max)`).join(' | ')} |`);
    console.log(`|---|${OBJECTS.slice(1).map(() => '---:').join('|')}|`);
    for (let k = 0; k < perObject; k++) {
      const ref = samples[k]!;
      const cells = OBJECTS.slice(1).map((_, j) => {
        const r = samples[(j + 1) * perObject + k]!.map((x, i) => x / ref[i]!);
        return `${median(r).toFixed(2)} (${Math.min(...r).toFixed(2)}-${Math.max(...r).toFixed(2)})`;
      });
      console.log(`| ${cases[k]!.label.slice(OBJECTS[0]!.label.length + 1)} | ${cells.join(' | ')} |`);
    }
  }
  for (const c of new Set(cases.map((c) => c.fp))) c.close();
}

try {
  main();
} catch (e) {
  console.error(`bench:xdp-zipf: ${operatorMessage(e)}`);
  process.exit(1);
}
