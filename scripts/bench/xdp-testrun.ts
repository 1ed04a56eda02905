/**
 * npm run bench:xdp: nanoseconds per packet of the XDP program for a hit, a miss and a
 * pass, measured by BPF_PROG_TEST_RUN (the kernel's own timer, no syscall cost).
 *
 * A hit rewrites the frame into a reply, so test-run's `repeat` would time the second
 * pass over a reply; every figure is therefore the mean of many single runs on a fresh
 * copy. Cases alternate within each round so drift hits them alike; the median of the
 * rounds is reported with its min-max. For miss and pass, `repeat` (one syscall, many
 * runs) is reported as a cross-check.
 */
import { FastPath, XdpAction } from '../../src/xdp/fastpath.js';
import { buildFrame } from '../../test/helpers/frames.js';
import { query, response, cached } from '../../test/helpers/dns.js';
import { operatorMessage } from '../../src/errors.js';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const RUNS = Number(process.env.RUNS ?? 100_000);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function main(): void {
  const fp = FastPath.open({ hotEntries: 1024 });
  const now = fp.nowNs();
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

  const cases: { name: string; frame: Buffer; action: number; repeatOk: boolean }[] = [
    { name: 'hit  IPv4 A (2 RRs)', frame: buildFrame(query('WWW.example.com', 'A')), action: XdpAction.TX, repeatOk: false },
    { name: 'hit  IPv6 AAAA (4 RRs) + EDNS, partial csum', frame: buildFrame(query('v6.example.com', 'AAAA', { edns: { udpSize: 1232 } }), { ipv6: true, partialChecksum: true }), action: XdpAction.TX, repeatOk: false },
    { name: 'miss IPv4 (redirect; no socket: PASS)', frame: buildFrame(query('cold.example.org', 'A')), action: XdpAction.PASS, repeatOk: true },
    { name: 'pass IPv4 UDP to port 443', frame: buildFrame(query('www.example.com', 'A'), { dport: 443 }), action: XdpAction.PASS, repeatOk: true },
  ];

  const samples = cases.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    cases.forEach((c, i) => {
      const res = fp.benchRun(c.frame, RUNS);
      if (res.action !== c.action) throw new Error(`${c.name}: action ${res.action}, expected ${c.action}`);
      samples[i]!.push(res.meanNs);
    });
  }

  const rows = cases.map((c, i) => {
    const s = samples[i]!;
    const rep = c.repeatOk ? fp.testRun(c.frame, RUNS).durationNs : NaN;
    return { case: c.name, median: median(s), min: Math.min(...s), max: Math.max(...s), repeat: rep };
  });
  const hit = rows[0]!.median;
  console.log(`XDP program, BPF_PROG_TEST_RUN, ${ROUNDS} rounds x ${RUNS} runs per case (ns/packet)`);
  console.log('| case | median | min-max | ratio to IPv4 hit | repeat=N cross-check |');
  console.log('|---|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.case} | ${r.median.toFixed(0)} | ${r.min.toFixed(0)}-${r.max.toFixed(0)} | ${(r.median / hit).toFixed(2)} | ${Number.isNaN(r.repeat) ? 'n/a (rewrites)' : r.repeat.toFixed(0)} |`);
  }
  fp.close();
}

try {
  main();
} catch (e) {
  console.error(`bench:xdp: ${operatorMessage(e)}`);
  process.exit(1);
}
