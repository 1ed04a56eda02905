/**
 * Differential test: heimdall-xdp against Unbound, both caching forwarders in front of the
 * lab's NSD, asked the same questions by the same client. Each question is asked four
 * times of each, so heimdall-xdp answers it from the upstream, then from its cache, and
 * (third ask: promotion) from the XDP map; every one of those answers must say what
 * Unbound says.
 *
 * Compared: the ID, QR/OPCODE/TC/RD/RA/CD/AA, the RCODE (extended through the OPT), the
 * question section byte for byte (the asker's letter case), the answer records as a set
 * (owner names compared without case, rdata as decoded), the authority section's owners
 * and types, and whether an OPT came back and with which DO bit. Not compared: record
 * order, TTLs (each checked against the zone's instead: never above it) and the
 * additional section (Unbound adds glue for NS answers; heimdall-xdp keeps what the
 * upstream sent, scrubbed). A truncated answer is compared by its header only: what a
 * server puts in a TC=1 answer is its own choice, the client retries over TCP, and that
 * TCP answer is compared in full.
 *
 * Queries without RD are compared too: both refuse them, cached or not (docs/CORE.md,
 * "Queries without RD"), and heimdall-xdp does so on the XDP path as well.
 *
 * Left out by design: a name every upstream refuses. heimdall-xdp passes the REFUSED on
 * (docs/FORWARDER.md, item 8), Unbound answers SERVFAIL; the lab's NSD refuses every zone
 * but its own, so here that is any foreign name.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { decode, ednsOption, query, type Decoded, type DecodedRR, type QueryOptions } from '../helpers/dns.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';
import { sh } from '../helpers/netns.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const UNBOUND_PORT = 5300;
const ROUNDS = 4;

interface Case {
  label: string;
  name: string;
  type: string;
  o?: QueryOptions & { ednsVersion?: number };
  tcp?: boolean;
}

const EDNS = { udpSize: 1232 };
const CASES: Case[] = [
  { label: 'A, two records', name: 'www.lab.example', type: 'A', o: { edns: EDNS } },
  { label: 'A, no EDNS', name: 'www.lab.example', type: 'A' },
  { label: 'AAAA', name: 'www.lab.example', type: 'AAAA', o: { edns: EDNS } },
  { label: 'mixed case question', name: 'WwW.lAb.ExAmPlE', type: 'A', o: { edns: EDNS } },
  { label: 'mixed case, other letters', name: 'wWw.LaB.eXaMpLe', type: 'AAAA' },
  { label: 'CNAME chain to A', name: 'alias.lab.example', type: 'A', o: { edns: EDNS } },
  { label: 'CNAME chain to AAAA', name: 'alias.lab.example', type: 'AAAA' },
  { label: 'CNAME asked as such', name: 'alias2.lab.example', type: 'CNAME', o: { edns: EDNS } },
  { label: 'MX', name: 'mail.lab.example', type: 'MX', o: { edns: EDNS } },
  { label: 'NODATA (AAAA of a v4-only name)', name: 'v4only.lab.example', type: 'AAAA', o: { edns: EDNS } },
  { label: 'NODATA (MX of www)', name: 'www.lab.example', type: 'MX' },
  { label: 'NODATA of an unknown type', name: 'www.lab.example', type: 'TYPE65280', o: { edns: EDNS } },
  { label: 'NXDOMAIN', name: 'nosuch.lab.example', type: 'A', o: { edns: EDNS } },
  { label: 'NXDOMAIN, deeper, no EDNS', name: 'a.b.nosuch.lab.example', type: 'AAAA' },
  { label: 'SOA at the apex', name: 'lab.example', type: 'SOA', o: { edns: EDNS } },
  { label: 'NS at the apex', name: 'lab.example', type: 'NS', o: { edns: EDNS } },
  { label: 'short TTL', name: 'short.lab.example', type: 'A', o: { edns: EDNS } },
  { label: 'one of the h names', name: 'h42.lab.example', type: 'A' },
  { label: 'DO bit', name: 'www.lab.example', type: 'A', o: { edns: { udpSize: 1232, do: true } } },
  { label: 'DO bit, NXDOMAIN', name: 'nosuch2.lab.example', type: 'A', o: { edns: { udpSize: 4096, do: true } } },
  { label: 'CD bit', name: 'mx1.lab.example', type: 'A', o: { cd: true, edns: EDNS } },
  { label: 'unknown EDNS option', name: 'ns1.lab.example', type: 'A', o: { edns: { udpSize: 1232, options: [ednsOption(65001, Buffer.from('abcd', 'hex'))] } } },
  { label: 'EDNS version 1 (BADVERS)', name: 'ns1.lab.example', type: 'AAAA', o: { edns: EDNS, ednsVersion: 1 } },
  { label: 'EDNS size below 512', name: 'ten.lab.example', type: 'A', o: { edns: { udpSize: 256 } } },
  { label: 'TXT set too large for 512 bytes', name: 'big.lab.example', type: 'TXT' },
  { label: 'TXT set too large for 1232 bytes', name: 'big.lab.example', type: 'TXT', o: { edns: EDNS } },
  { label: 'TXT set over TCP', name: 'big.lab.example', type: 'TXT', tcp: true },
  { label: 'A over TCP', name: 'www.lab.example', type: 'A', o: { edns: EDNS }, tcp: true },
  // Asked after the same names with RD, so they are cached (and www is in the XDP map).
  { label: 'no RD, a cached name', name: 'www.lab.example', type: 'A', o: { rd: false, edns: EDNS } },
  { label: 'no RD, no EDNS', name: 'alias.lab.example', type: 'A', o: { rd: false } },
  { label: 'no RD, a name not cached', name: 'h77.lab.example', type: 'A', o: { rd: false, edns: EDNS } },
];

/** The zone's TTL for a record (scripts/lab/zone.sh): never exceeded by a cache. */
function zoneTtl(rr: DecodedRR): number {
  const name = rr.name.toLowerCase();
  if (rr.type === 'SOA' || (rr.type === 'NS' && name === 'lab.example')) return 3600;
  if (name === 'short.lab.example') return 5;
  if (name === 'ten.lab.example') return 10;
  return 300;
}

function wire(c: Case, id: number): Buffer {
  const q = query(c.name, c.type, { ...c.o, id });
  if (c.o?.ednsVersion === undefined) return q;
  // dns-packet writes the OPT's version from ednsVersion; query() does not pass it on.
  const m = dnsPacket.decode(q);
  const opt = m.additionals!.find((a) => a.type === 'OPT') as unknown as { ednsVersion: number };
  opt.ednsVersion = c.o.ednsVersion;
  return dnsPacket.encode(m);
}

/** The question section's bytes: from offset 12 to the end of the one question. */
function questionBytes(msg: Buffer): string {
  let o = 12;
  while (msg[o] !== 0) o += msg[o]! + 1;
  return msg.subarray(12, o + 5).toString('hex');
}

const lower = (v: unknown): unknown =>
  typeof v === 'string' ? v.toLowerCase() : Buffer.isBuffer(v) ? v.toString('hex') : Array.isArray(v) ? v.map(lower) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, lower(x)])) : v;

/** What must be the same in both servers' answers to one query. */
function shape(raw: Buffer, q: Buffer): Record<string, unknown> {
  const m: Decoded = decode(raw);
  const opt = m.additionals.find((a) => a.type === 'OPT') as (DecodedRR & { extendedRcode: number; ednsVersion: number; flag_do: boolean }) | undefined;
  const f = m.flags;
  const head = {
    idEchoed: raw.readUInt16BE(0) === q.readUInt16BE(0),
    qr: (f >> 15) & 1,
    opcode: (f >> 11) & 0xf,
    aa: (f >> 10) & 1,
    tc: (f >> 9) & 1,
    rd: (f >> 8) & 1,
    ra: (f >> 7) & 1,
    cd: (f >> 4) & 1,
    rcode: ((opt?.extendedRcode ?? 0) << 4) | (f & 0xf),
    question: questionBytes(raw) === questionBytes(q),
    opt: opt ? { version: opt.ednsVersion, do: opt.flag_do } : null,
  };
  if (head.tc) return head;
  return {
    ...head,
    answers: m.answers.map((a) => `${a.name.toLowerCase()} ${a.type} ${a.class} ${JSON.stringify(lower(a.data))}`).sort(),
    authorities: m.authorities.map((a) => `${a.name.toLowerCase()} ${a.type}`).sort(),
  };
}

describePrivileged('differential: heimdall-xdp answers as Unbound does', { netns: true, tools: ['nsd', 'dig', 'unbound', 'python3', 'curl'] }, () => {
  const lab = new Lab('hxdf');
  let svc: Service;
  let unbound: ChildProcess | undefined;
  let dir = '';
  suiteService(
    lab,
    {
      zone: 100,
      args: ['--upstream', ADDR.upstream4, '--metrics-listen', '127.0.0.1:9153'],
      setup: () => {
        dir = mkdtempSync(join(tmpdir(), 'hx-unbound-'));
        const conf = sh('bash', [`${ROOT}/scripts/bench/peers/unbound.conf.sh`, dir, ADDR.appliance4, ADDR.upstream4, '1', String(UNBOUND_PORT)]);
        writeFileSync(join(dir, 'unbound.conf'), conf);
        unbound = spawn('ip', ['netns', 'exec', lab.ns.appliance, 'unbound', '-d', '-c', join(dir, 'unbound.conf')], { stdio: 'ignore' });
      },
      cleanup: () => {
        unbound?.kill('SIGTERM');
        rmSync(dir, { recursive: true, force: true });
      },
    },
    (s) => (svc = s),
  );

  let answers: (string | null)[][][] = [];
  const queries = CASES.map((c, i) => wire(c, 0x1000 + i));

  beforeAll(async () => {
    // Unbound is up once it answers.
    for (let i = 0; i < 50; i++) {
      if (/status: NOERROR/.test(lab.dig(['-p', String(UNBOUND_PORT), 'www.lab.example', 'A']))) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const job = {
      servers: [
        [ADDR.appliance4, 53],
        [ADDR.appliance4, UNBOUND_PORT],
      ],
      queries: queries.map((q, i) => ({ wire: q.toString('hex'), tcp: CASES[i]!.tcp === true })),
      rounds: ROUNDS,
      timeout: 2,
    };
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn('ip', ['netns', 'exec', lab.ns.client, 'python3', join(HERE, 'tools/ask.py')], { stdio: ['pipe', 'pipe', 'pipe'] });
      let so = '';
      let se = '';
      p.stdout.on('data', (d) => (so += d));
      p.stderr.on('data', (d) => (se += d));
      p.on('exit', (code) => (code === 0 ? resolve(so) : reject(new Error(`ask.py exited ${code}: ${se}`))));
      p.stdin.end(JSON.stringify(job));
    });
    answers = (JSON.parse(out) as { answers: (string | null)[][][] }).answers;
  }, 120_000);

  it.each(CASES.map((c, i) => [c.label, i] as const))('%s: every round answers as Unbound does', (_label, i) => {
    for (let r = 0; r < ROUNDS; r++) {
      const [ours, theirs] = answers[r]![i]!;
      expect(theirs, `Unbound gave no answer (round ${r + 1})`).not.toBeNull();
      expect(ours, `heimdall-xdp gave no answer (round ${r + 1})`).not.toBeNull();
      const a = Buffer.from(ours!, 'hex');
      const b = Buffer.from(theirs!, 'hex');
      expect(shape(a, queries[i]!), `round ${r + 1}`).toEqual(shape(b, queries[i]!));
      for (const rr of [...decode(a).answers, ...decode(a).authorities]) {
        expect(rr.ttl, `${rr.name} ${rr.type} TTL, round ${r + 1}`).toBeLessThanOrEqual(zoneTtl(rr));
      }
    }
  });

  it('the rounds went through every path: upstream, cache and the XDP map', () => {
    const m = svc.metricsWhen((x) => (x['heimdall_responses_total{path="xdp"}'] ?? 0) > 0);
    expect(m['heimdall_responses_total{path="upstream"}']).toBeGreaterThan(0);
    expect(m['heimdall_responses_total{path="cache"}']).toBeGreaterThan(0);
    expect(m['heimdall_responses_total{path="xdp"}']).toBeGreaterThan(0);
  });
});
