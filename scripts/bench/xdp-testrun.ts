/**
 * npm run bench:xdp: nanoseconds per packet of the XDP program for a hit (with rate
 * limiting off and on), a refused, a denied and a rate-limited query, a miss and a pass,
 * measured by BPF_PROG_TEST_RUN (the kernel's own timer, no syscall cost). The edge
 * policy is the shipped one: access lists loaded, the served addresses set.
 *
 * A hit rewrites the frame into a reply, so test-run's `repeat` would time the second
 * pass over a reply; every figure is therefore the mean of many single runs on a fresh
 * copy. Cases alternate within each round so drift hits them alike; the median of the
 * rounds is reported with its min-max. For miss and pass, `repeat` (one syscall, many
 * runs) is reported as a cross-check. OBJECTS (label=object.bpf.o@addon.node, comma
 * separated) times other builds side by side, alternating case by case, with per-round
 * ratios to the first.
 */
import { createRequire } from 'node:module';
import { FastPath, XdpAction } from '../../src/xdp/fastpath.js';
import { loadAddon, type NativeAddon } from '../../src/native/addon.js';
import { buildFrame } from '../../test/helpers/frames.js';
import { query, response, cached } from '../../test/helpers/dns.js';
import { operatorMessage } from '../../src/errors.js';
import { AccessList, parseAclList } from '../../src/edge/acl.js';
import { RRL_DEFAULTS } from '../../src/edge/rrl.js';
import { parseAddr } from '../../src/net/addr.js';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
// OBJECTS=label=object.bpf.o@addon.node,...: other builds (both halves: a layout change
// needs the addon built with it), loaded side by side and alternating case by case.
const OBJECTS = (process.env.OBJECTS ?? '').split(',').filter(Boolean).map((spec) => {
  const [label, rest] = spec.split('=') as [string, string];
  const [path, addonPath] = rest.split('@') as [string, string | undefined];
  return { label, path, addon: addonPath ? (createRequire(import.meta.url)(addonPath) as NativeAddon) : loadAddon() };
});
const RUNS = Number(process.env.RUNS ?? 100_000);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Case {
  name: string;
  frame: Buffer;
  action: number;
  repeatOk: boolean;
  setup: () => void;
  tight: boolean;
}

function prepare(fp: FastPath): Case[] {
  const now = fp.nowNs();
  // The fixtures' client is allowed; 198.20.0.0/16 is in no list (refused), 198.18.66.0/24 denied.
  fp.setAccessList(AccessList.build(parseAclList('default,198.18.0.0/15,fd00::/8'), parseAclList('198.18.66.0/24')));
  fp.setLocalAddresses(['198.18.0.1', 'fd00::1'].map((a) => parseAddr(a)!));
  const rrlOff = (): void => fp.setRateLimit({ ...RRL_DEFAULTS, rate: 0 });
  // The highest rate: every answer is charged to its bucket, none is limited.
  const rrlOn = (): void => {
    fp.clearRateLimit(); // the rate-limited case leaves its bucket in debt
    fp.setRateLimit({ ...RRL_DEFAULTS, rate: 1_000_000 });
  };
  // One response a second: after the first run every one is over the limit (no slips).
  const rrlTight = (): void => fp.setRateLimit({ ...RRL_DEFAULTS, rate: 1, slip: 0 });
  // A typical hot answer: two A records; and a larger one, four AAAA plus EDNS.
  fp.put(cached(response('www.example.com', 'A', {
    answers: [
      { type: 'A', name: 'www.example.com', ttl: 300, data: '198.18.10.1' },
      { type: 'A', name: 'www.example.com', ttl: 300, data: '198.18.10.2' },
    ],
  }), now));
  fp.put(cached(response('v6.example.com', 'AAAA', {
    answers: [1, 2, 3, 4].map((i) => ({ type: 'AAAA', name: 'v6.example.com', ttl: 300, data: `fd00::${i}` })),
  }), now));
  // Fill the map so lookups are not on an empty table.
  for (let i = 0; i < 1000; i++) {
    const n = `filler${i}.example.net`;
    fp.put(cached(response(n, 'A', { answers: [{ type: 'A', name: n, ttl: 300, data: '198.18.20.1' }] }), now));
  }

  const hitA = buildFrame(query('WWW.example.com', 'A'));
  const cases: Omit<Case, 'tight'>[] = [
    { name: 'hit  IPv4 A (2 RRs), rate limiting on', frame: hitA, action: XdpAction.TX, repeatOk: false, setup: rrlOn },
    { name: 'hit  IPv4 A (2 RRs), rate limiting off', frame: hitA, action: XdpAction.TX, repeatOk: false, setup: rrlOff },
    { name: 'hit  IPv6 AAAA (4 RRs) + EDNS, partial csum', frame: buildFrame(query('v6.example.com', 'AAAA', { edns: { udpSize: 1232 } }), { ipv6: true, partialChecksum: true }), action: XdpAction.TX, repeatOk: false, setup: rrlOn },
    { name: 'refused IPv4 (REFUSED written in XDP)', frame: buildFrame(query('www.example.com', 'A'), { src: '198.20.0.2' }), action: XdpAction.TX, repeatOk: false, setup: rrlOn },
    { name: 'denied IPv4 (dropped)', frame: buildFrame(query('www.example.com', 'A'), { src: '198.18.66.2' }), action: XdpAction.DROP, repeatOk: true, setup: rrlOn },
    { name: 'rate-limited IPv4 hit (dropped)', frame: hitA, action: XdpAction.DROP, repeatOk: true, setup: rrlTight },
    { name: 'miss IPv4 (redirect; no socket: PASS)', frame: buildFrame(query('cold.example.org', 'A')), action: XdpAction.PASS, repeatOk: true, setup: rrlOn },
    { name: 'pass IPv4 UDP to port 443', frame: buildFrame(query('www.example.com', 'A'), { dport: 443 }), action: XdpAction.PASS, repeatOk: true, setup: rrlOn },
  ];
  return cases.map((c) => ({ ...c, tight: c.setup === rrlTight }));
}

function main(): void {
  const builds = OBJECTS.length ? OBJECTS : [{ label: '', path: '', addon: loadAddon() }];
  const sides = builds.map((b) => {
    const fp = FastPath.open({ hotEntries: 1024, ...(b.path ? { objectPath: b.path } : {}) }, b.addon);
    return { label: b.label, fp, cases: prepare(fp) };
  });
  const cases = sides[0]!.cases;
  const samples = sides.map(() => cases.map(() => [] as number[]));
  for (let r = 0; r < ROUNDS; r++) {
    cases.forEach((_, i) => {
      sides.forEach((side, j) => {
        const c = side.cases[i]!;
        c.setup();
        if (c.tight) side.fp.testRun(c.frame); // spend the one response of the second
        const res = side.fp.benchRun(c.frame, RUNS);
        if (res.action !== c.action) throw new Error(`${side.label} ${c.name}: action ${res.action}, expected ${c.action}`);
        samples[j]![i]!.push(res.meanNs);
      });
    });
  }

  sides.forEach((side, j) => {
    const rows = side.cases.map((c, i) => {
      const s = samples[j]![i]!;
      c.setup();
      const rep = c.repeatOk ? side.fp.testRun(c.frame, RUNS).durationNs : NaN;
      return { case: c.name, median: median(s), min: Math.min(...s), max: Math.max(...s), repeat: rep };
    });
    const hit = rows[0]!.median;
    console.log(`XDP program${side.label ? ` (${side.label})` : ''}, BPF_PROG_TEST_RUN, ${ROUNDS} rounds x ${RUNS} runs per case (ns/packet)`);
    console.log('| case | median | min-max | ratio to IPv4 hit | repeat=N cross-check |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(`| ${r.case} | ${r.median.toFixed(0)} | ${r.min.toFixed(0)}-${r.max.toFixed(0)} | ${(r.median / hit).toFixed(2)} | ${Number.isNaN(r.repeat) ? 'n/a (rewrites)' : r.repeat.toFixed(0)} |`);
    }
    console.log('');
  });
  if (sides.length > 1) {
    console.log(`| case | ${sides.slice(1).map((x) => `${x.label} / ${sides[0]!.label} (median, min-max of per-round ratios)`).join(' | ')} |`);
    console.log(`|---|${sides.slice(1).map(() => '---:').join('|')}|`);
    cases.forEach((c, i) => {
      const cells = sides.slice(1).map((_, j) => {
        const ratios = samples[j + 1]![i]!.map((x, r) => x / samples[0]![i]![r]!);
        return `${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`;
      });
      console.log(`| ${c.name} | ${cells.join(' | ')} |`);
    });
  }
  for (const side of sides) side.fp.close();
}

try {
  main();
} catch (e) {
  console.error(`bench:xdp: ${operatorMessage(e)}`);
  process.exit(1);
}
