/**
 * What scrubbing costs the userspace miss path (issue 13). Upstream answers shaped as a
 * recursive upstream sends them (the answer RRset, the zone's NS in authority, their
 * glue in additional, an OPT; a third with a CNAME first, a third with an RRSIG per
 * RRset), and three measurements:
 *
 *   1. answerFromResponse per upstream answer;
 *   2. scrubResponse as the forwarder runs it (rules + minimal responses);
 *   3. the engine's miss path end to end: 100% misses (every query a new name), the
 *      resolver a stub that hands back the upstream answer at once (scrubbed first when
 *      this tree has the scrubber, as the forwarder does), then insert and reply.
 *
 * Run it on two trees to compare, e.g. main and a branch; on a tree without
 * src/dns/scrub.ts it measures the old path (no scrubbing):
 *   npx tsx scripts/bench/scrub.ts [--quick]
 */
import dnsPacket from 'dns-packet';
import { Bench } from 'tinybench';
import { answerFromResponse } from '../../src/dns/index.js';
import { DnsEngine } from '../../src/engine/engine.js';
import { mulberry32 } from './rng.js';

const QUICK = process.argv.includes('--quick');
const rnd = mulberry32(13);

type Scrub = (msg: Uint8Array, opts: { minimal?: boolean; dnssecOk?: boolean }) => Uint8Array;
let scrub: Scrub | null = null;
try {
  const path = '../../src/dns/scrub.js';
  scrub = ((await import(path)) as { scrubResponse: Scrub }).scrubResponse;
} catch {
  scrub = null;
}

const N = 4096;
const sig = (name: string, covered: string): dnsPacket.Answer =>
  ({ name, type: 'RRSIG', ttl: 300, class: 'IN', data: { typeCovered: covered, algorithm: 13, labels: 3, originalTTL: 300, expiration: 2e9, inception: 1e9, keyTag: 7, signersName: 'example.com', signature: Buffer.alloc(64, 3) } }) as dnsPacket.Answer;

function upstreamAnswer(i: number): { name: string; query: Buffer; response: Buffer } {
  const name = `n${i.toString(36)}-${Math.floor(rnd() * 1e6)}.example.com`;
  const kind = i % 3; // 0 plain, 1 CNAME first, 2 signed
  const answers: dnsPacket.Answer[] = [];
  let owner = name;
  if (kind === 1) {
    answers.push({ name, type: 'CNAME', ttl: 300, class: 'IN', data: `edge${i % 7}.cdn.example.net` } as dnsPacket.Answer);
    owner = `edge${i % 7}.cdn.example.net`;
  }
  for (let k = 0; k < 2; k++) answers.push({ name: owner, type: 'A', ttl: 300, class: 'IN', data: `198.18.${i & 0xff}.${k + 1}` } as dnsPacket.Answer);
  if (kind === 2) answers.push(sig(owner, 'A'));
  const zone = kind === 1 ? 'cdn.example.net' : 'example.com';
  const authorities = [1, 2].map((k) => ({ name: zone, type: 'NS', ttl: 86400, class: 'IN', data: `ns${k}.${zone}` }) as dnsPacket.Answer);
  const additionals = [
    ...[1, 2].map((k) => ({ name: `ns${k}.${zone}`, type: 'A', ttl: 86400, class: 'IN', data: `198.18.200.${k}` }) as dnsPacket.Answer),
    { type: 'OPT', name: '.', udpPayloadSize: 1232, flags: kind === 2 ? dnsPacket.DNSSEC_OK : 0 } as unknown as dnsPacket.Answer,
  ];
  const response = dnsPacket.encode({ type: 'response', id: i & 0xffff, flags: 0x8180, questions: [{ name, type: 'A', class: 'IN' }], answers, authorities, additionals });
  const query = dnsPacket.encode({ type: 'query', id: i & 0xffff, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: kind === 2 ? dnsPacket.DNSSEC_OK : 0 } as unknown as dnsPacket.Answer] });
  return { name, query, response };
}

async function main(): Promise<void> {
  const samples = Array.from({ length: N }, (_, i) => upstreamAnswer(i));
  const resps = samples.map((s) => new Uint8Array(s.response));
  const now = 1e12;
  const time = QUICK ? 400 : 1500;
  const bench = new Bench({ time, warmupTime: 200 });
  let i = 0;
  let sink = 0;
  bench.add('answerFromResponse', () => {
    sink ^= answerFromResponse(resps[i]!, now).records.length;
    i = (i + 1) % N;
  });
  if (scrub !== null) {
    const s = scrub;
    bench.add('scrubResponse (rules + minimal)', () => {
      sink ^= s(resps[i]!, { minimal: true }).length;
      i = (i + 1) % N;
    });
  }

  // The miss path: a fresh engine per round so that every query is a miss.
  const byName = new Map<string, Uint8Array>();
  for (const s of samples) byName.set(s.name, s.response);
  const resolver = {
    resolve(q: { name: Uint8Array; dnssecOk: boolean }): Promise<Uint8Array> {
      const text = dnsPacket.decode(Buffer.concat([Buffer.from([0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from(q.name), Buffer.from([0, 1, 0, 1])])).questions![0]!.name;
      const r = byName.get(text)!;
      return Promise.resolve(scrub !== null ? scrub(r, { minimal: true, dnssecOk: q.dnssecOk }) : r);
    },
  };
  // Name lookup in the stub costs the same on both trees; measured apart to subtract it.
  const stubOnly = new Bench({ time, warmupTime: 200 });
  const names = samples.map((s) => dnsPacket.encode({ type: 'query', questions: [{ name: s.name, type: 'A' }] }).subarray(12, -4));
  let k = 0;
  stubOnly.add('resolver stub alone', async () => {
    sink ^= (await resolver.resolve({ name: names[k]!, dnssecOk: false })).length;
    k = (k + 1) % N;
  });

  const out = new Uint8Array(2048);
  let engine = new DnsEngine({ resolver, cacheSize: 2 * N, hotCapacity: 0 });
  let j = 0;
  bench.add('engine miss: query -> upstream answer -> cache -> reply', async () => {
    if (j === 0) engine = new DnsEngine({ resolver, cacheSize: 2 * N, hotCapacity: 0 });
    const q = samples[j]!.query;
    const n = await engine.handle(q, 0, q.length, out, 0, false);
    sink ^= n;
    j = (j + 1) % N;
  });

  await bench.run();
  await stubOnly.run();
  console.log(`tree: ${scrub !== null ? 'with the scrubber' : 'without the scrubber'}; ${N} distinct upstream answers; Node ${process.version}`);
  console.log('| measurement | ops/s | mean µs | median µs |');
  console.log('|---|---|---|---|');
  for (const b of [bench, stubOnly]) {
    for (const t of b.tasks) {
      // Rate from the mean time per operation (the mean of per-sample rates overweights fast samples).
      const r = t.result as { latency?: { mean: number; p50?: number } } | undefined;
      const ms = r?.latency?.mean ?? 0;
      console.log(`| ${t.name} | ${ms > 0 ? Math.round(1000 / ms).toLocaleString('en-US') : '-'} | ${(ms * 1000).toFixed(2)} | ${((r?.latency?.p50 ?? 0) * 1000).toFixed(2)} |`);
    }
  }
  if (sink === 0.5) console.log(sink);
}

await main();
