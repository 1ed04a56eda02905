/**
 * The upstream side of a cache miss, stage by stage (issue 16, item 1).
 *
 * A fast local upstream (scripts/bench/miss/responder.cjs: answers from a template, in
 * its own process) on 127.0.0.1, and four measurements, every variant side by side in
 * one run, alternating rounds:
 *
 *   1. stages in isolation, mean per call: the coalescing key, 0x20 + cookie + query
 *      build, a fresh socket's create + random bind + close, one send on a bound socket,
 *      the answer's check (matchResponse), the scrub, a promise + two timers;
 *   2. Forwarder.resolve, every question a new name: latency at 1 in flight (p50/p99,
 *      beside the floor: one bound socket's round trip to the same responder) and
 *      throughput + CPU per miss at 64 in flight, for a fresh socket per query
 *      (portReuse 1) and the bounded pool (portReuse 64);
 *   3. a CPU profile (node:inspector) of each variant's 64-in-flight run: self time by
 *      stage (socket create/bind/close, send, receive, timers, the check, the scrub, ...);
 *   4. the whole userspace miss (kernel UDP in → DnsEngine → Forwarder → reply out) in a
 *      child process (scripts/bench/miss/server.ts), beside Unbound as a caching
 *      forwarder to the same responder, both driven by the same client with new names.
 *
 * A benchmark, not a test: its numbers are for reading. The machine it ran on is shared.
 *   npm run bench:miss [-- --quick] [-- --no-unbound]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { textToWire } from '../../src/dns/name.js';
import { scrubResponse } from '../../src/dns/scrub.js';
import { MessageView } from '../../src/dns/view.js';
import { Forwarder } from '../../src/upstream/forwarder.js';
import { UpstreamGuard } from '../../src/upstream/guard.js';
import { kernelPortRange, randomPort, randomU16 } from '../../src/upstream/random.js';
import { buildQuery, matchResponse, questionKey, type Question } from '../../src/upstream/wire.js';
import { attribute, type Profile } from './miss/attribute.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const QUICK = process.argv.includes('--quick');
const UNBOUND = !process.argv.includes('--no-unbound');
const ROUNDS = QUICK ? 1 : 3;
const N_LAT = QUICK ? 1000 : 3000;
const N_TPUT = QUICK ? 5000 : 15_000;
const VARIANTS = [1, 64];

let seq = 0;
/** A name never asked before in this process. */
const fresh = (): string => `m${(seq++).toString(36)}-${process.pid}.bench.test`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const us = (ms: number): string => (ms * 1000).toFixed(0);

async function spawnPort(cmd: string, args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, port: Number(line.toString().trim()) };
}

// ---- 1. stages in isolation ----------------------------------------------------------

async function stages(upPort: number): Promise<void> {
  const N = QUICK ? 20_000 : 100_000;
  const names = Array.from({ length: 1024 }, () => textToWire(fresh()));
  const q = (i: number): Question => ({ name: names[i & 1023]!, qtype: 1, qclass: 1, dnssecOk: false });
  const guard = new UpstreamGuard();
  const time = (label: string, n: number, f: (i: number) => unknown): void => {
    for (let i = 0; i < 1000; i++) f(i);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) f(i);
    console.log(`  ${label.padEnd(52)} ${(((performance.now() - t0) / n) * 1000).toFixed(2).padStart(7)} µs`);
  };
  console.log('1. stages in isolation (mean per call)');
  time('questionKey (coalescing key)', N, (i) => questionKey(q(i)));
  time('guard.prepare + buildQuery (0x20, cookie, wire)', N, (i) => buildQuery(guard.prepare(q(i), 0), randomU16(), 1232));
  // The answer the responder would send, and its check and scrub.
  const sent = guard.prepare(q(0), 0);
  const query = buildQuery(sent, 77, 1232);
  const ans = await new Promise<Buffer>((resolve) => {
    const s = dgram.createSocket('udp4');
    s.on('message', (m) => {
      s.close();
      resolve(m);
    });
    s.send(query, upPort, '127.0.0.1');
  });
  const view = new MessageView();
  time('matchResponse (ID, parse, question, case, cookie)', N, () => matchResponse(view, ans, 77, sent));
  time('scrubResponse (rules + minimal)', N / 4, () => scrubResponse(ans, { minimal: true, dnssecOk: false }));
  time('new Promise + resolve + 2 × (setTimeout, clearTimeout)', N / 4, () => {
    let r!: (v: number) => void;
    const p = new Promise<number>((res) => (r = res));
    const t1 = setTimeout(() => {}, 4000);
    const t2 = setTimeout(() => {}, 1000);
    clearTimeout(t2);
    clearTimeout(t1);
    r(1);
    return p;
  });
  // Socket life: create, bind to a random port, close; awaited one at a time.
  const range = kernelPortRange();
  const nSock = QUICK ? 1000 : 3000;
  let t0 = performance.now();
  for (let i = 0; i < nSock; i++) {
    const s = dgram.createSocket('udp4');
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.bind({ port: randomPort(range), address: '0.0.0.0', exclusive: true }, () => resolve(true));
    });
    s.close();
    if (!ok) i--;
  }
  console.log(`  ${'socket create + random bind + close (awaited)'.padEnd(52)} ${(((performance.now() - t0) / nSock) * 1000).toFixed(2).padStart(7)} µs`);
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '0.0.0.0', r));
  s.on('message', () => {});
  t0 = performance.now();
  let done = 0;
  await new Promise<void>((resolve) => {
    for (let i = 0; i < nSock; i++) s.send(query, upPort, '127.0.0.1', () => ++done === nSock && resolve());
  });
  console.log(`  ${'send on a bound socket, to its callback'.padEnd(52)} ${(((performance.now() - t0) / nSock) * 1000).toFixed(2).padStart(7)} µs`);
  s.close();
}

// ---- 2. the Forwarder -----------------------------------------------------------------

/** One bound socket's round trip to the responder, one at a time: kernel + responder + event loop. */
async function floor(upPort: number, n: number): Promise<number[]> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const wire = buildQuery({ name: textToWire('floor.bench.test'), qtype: 1, qclass: 1, dnssecOk: false }, 1, 1232);
  const lat: number[] = [];
  let lost = 0;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 1000);
      s.once('message', () => (clearTimeout(timer), resolve(true)));
      s.send(wire, upPort, '127.0.0.1');
    });
    if (ok) lat.push(performance.now() - t);
    else {
      lost++;
      s.removeAllListeners('message');
    }
  }
  if (lost > 0) console.log(`  (floor: ${lost} round trips lost)`);
  s.close();
  return lat;
}

async function closedLoop(c: number, n: number, one: () => Promise<unknown>): Promise<{ lat: number[]; qps: number; cpuUs: number }> {
  const lat: number[] = [];
  let left = n;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (left-- > 0) {
        const t = performance.now();
        await one();
        lat.push(performance.now() - t);
      }
    }),
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  return { lat, qps: n / (ms / 1000), cpuUs: (cpu.user + cpu.system) / n };
}

async function forwarderRuns(upPort: number): Promise<void> {
  console.log(`\n2. Forwarder.resolve, every question a new name (${ROUNDS} rounds, alternating; shared machine)`);
  const res = new Map<string, { p50: number[]; p99: number[]; qps: number[]; cpu: number[] }>();
  const put = (k: string, r: { lat: number[]; qps: number; cpuUs: number }, lat: boolean): void => {
    const e = res.get(k) ?? { p50: [], p99: [], qps: [], cpu: [] };
    if (lat) {
      e.p50.push(pct(r.lat, 50));
      e.p99.push(pct(r.lat, 99));
    } else {
      e.qps.push(r.qps);
      e.cpu.push(r.cpuUs);
    }
    res.set(k, e);
  };
  const profiles = new Map<number, Map<string, number>>();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  for (let r = 0; r < ROUNDS; r++) {
    const fl = await floor(upPort, N_LAT);
    put('floor: one bound socket, round trip', { lat: fl, qps: 0, cpuUs: 0 }, true);
    for (const reuse of r % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
      const fwd = new Forwarder({ upstreams: [{ host: '127.0.0.1', port: upPort, family: 4 }], portReuse: reuse, maxInflight: 4096 });
      const one = (): Promise<unknown> => fwd.resolve({ name: textToWire(fresh()), qtype: 1, qclass: 1, dnssecOk: false });
      const label = reuse === 1 ? 'Forwarder, fresh socket per query (reuse 1)' : `Forwarder, pooled sockets (reuse ${reuse})`;
      if (process.env.MISS_VERBOSE) console.log(`  round ${r} ${label}`);
      put(label, await closedLoop(1, N_LAT, one), true);
      const profile = r === ROUNDS - 1;
      if (profile) await session.post('Profiler.start');
      put(label, await closedLoop(64, N_TPUT, one), false);
      if (profile) {
        const { profile: p } = (await session.post('Profiler.stop')) as unknown as { profile: Profile };
        profiles.set(reuse, attribute(p));
      }
      const st = fwd.stats();
      if (st.answers < st.sent || st.servfail > 0) console.log(`  (reuse ${reuse}: sent ${st.sent}, answers ${st.answers}, servfail ${st.servfail})`);
      await fwd.close();
    }
  }
  session.disconnect();
  console.log('  variant                                        1 in flight p50 / p99 µs   64 in flight q/s   CPU µs/miss');
  for (const [k, e] of res) {
    const med = (xs: number[]): number => pct(xs, 50);
    const lat = e.p50.length ? `${us(med(e.p50)).padStart(6)} / ${us(med(e.p99)).padStart(6)}` : '';
    const tp = e.qps.length ? `${Math.round(med(e.qps)).toString().padStart(8)}   ${med(e.cpu).toFixed(1).padStart(8)}` : '';
    console.log(`  ${k.padEnd(46)} ${lat.padStart(20)}          ${tp}`);
  }
  console.log('  (medians over the rounds of each round\'s p50, p99, q/s and CPU)');
  const [fr, po] = VARIANTS.map((r) => [...res].find(([k]) => k.includes(`reuse ${r})`))?.[1]);
  if (fr && po) {
    const m = (xs: number[]): number => pct(xs, 50);
    const r = (a: number, b: number): string => (a / b).toFixed(2);
    console.log(`  pool ÷ fresh: p50 ${r(m(po.p50), m(fr.p50))}, p99 ${r(m(po.p99), m(fr.p99))}, q/s ${r(m(po.qps), m(fr.qps))}, CPU/miss ${r(m(po.cpu), m(fr.cpu))}`);
  }
  console.log('\n3. CPU profile of the last round at 64 in flight: self time by stage, % of profiled time');
  const keys = new Set<string>();
  for (const m of profiles.values()) for (const k of m.keys()) keys.add(k);
  const tot = new Map([...profiles].map(([r, m]) => [r, [...m.values()].reduce((a, b) => a + b, 0)]));
  const rows = [...keys].map((k) => ({ k, v: VARIANTS.map((r) => ((profiles.get(r)?.get(k) ?? 0) / tot.get(r)!) * 100) }));
  rows.sort((a, b) => b.v[0]! - a.v[0]!);
  console.log(`  ${'stage'.padEnd(52)} ${VARIANTS.map((r) => `reuse ${r}`.padStart(9)).join(' ')}`);
  for (const row of rows.slice(0, 22)) console.log(`  ${row.k.slice(0, 52).padEnd(52)} ${row.v.map((x) => x.toFixed(1).padStart(8) + '%').join(' ')}`);
}

// ---- 4. the whole userspace miss beside Unbound ------------------------------------------

/** New names to `port` from one socket, `c` in flight, matched by ID; latency per answer. */
async function drive(port: number, c: number, n: number): Promise<{ lat: number[]; qps: number; lost: number }> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const waiting = new Map<number, { t: number; done: () => void }>();
  s.on('message', (m) => {
    // Only a NOERROR answer with a record counts (a server answering NXDOMAIN itself did not miss).
    if (m.length < 12 || (m[3]! & 0xf) !== 0 || m.readUInt16BE(6) === 0) {
      bad++;
      return;
    }
    const w = waiting.get(m.readUInt16BE(0));
    if (w === undefined) return;
    waiting.delete(m.readUInt16BE(0));
    w.done();
  });
  const lat: number[] = [];
  let lost = 0;
  let bad = 0;
  let nextId = 1;
  let left = n;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (left-- > 0) {
        const id = nextId++ & 0xffff;
        const wire = buildQuery({ name: textToWire(fresh()), qtype: 1, qclass: 1, dnssecOk: false }, id, 1232);
        const t = performance.now();
        const ok = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => {
            waiting.delete(id);
            resolve(false);
          }, 1000);
          waiting.set(id, { t, done: () => (clearTimeout(timer), resolve(true)) });
          s.send(wire, port, '127.0.0.1');
        });
        if (ok) lat.push(performance.now() - t);
        else lost++;
      }
    }),
  );
  const ms = performance.now() - t0;
  s.close();
  if (bad > 0) console.log(`  (${bad} answers without a record: not a miss served)`);
  return { lat, qps: (n - lost) / (ms / 1000), lost };
}

async function startUnbound(upPort: number, dir: string): Promise<{ child: ChildProcess; port: number } | null> {
  if (spawnSync('unbound', ['-V']).status !== 0) return null;
  // A free port: bind one, note it, let it go.
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((r) => probe.bind(0, '127.0.0.1', r));
  const port = probe.address().port;
  probe.close();
  const conf = path.join(dir, 'unbound.conf');
  writeFileSync(
    conf,
    `server:
  interface: 127.0.0.1@${port}
  port: ${port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  do-ip6: no
  do-tcp: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  qname-minimisation: no
  # Unbound answers .test itself (RFC 6761 default zone): let it forward the bench's names.
  local-zone: "test." nodefault
  msg-cache-size: 64m
  rrset-cache-size: 128m
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@${upPort}
`,
  );
  const child = spawn('unbound', ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  // Ready when it answers.
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const r = await drive(port, 1, 1).catch(() => ({ lost: 1 }));
    if (r.lost === 0) return { child, port };
  }
  child.kill();
  return null;
}

async function wholeMiss(upPort: number): Promise<void> {
  console.log(`\n4. the whole userspace miss: kernel UDP in -> engine -> forwarder -> reply, beside Unbound (new names, ${ROUNDS} rounds alternating)`);
  const dir = mkdtempSync(path.join(tmpdir(), 'miss-path-'));
  const servers: { label: string; child: ChildProcess; port: number }[] = [];
  try {
    servers.push({ label: 'responder alone (the floor)', child: null as unknown as ChildProcess, port: upPort });
    for (const reuse of VARIANTS) {
      const { child, port } = await spawnPort(process.execPath, ['--import', 'tsx', path.join(HERE, 'miss', 'server.ts'), String(upPort), String(reuse)]);
      servers.push({ label: `engine + forwarder, reuse ${reuse}`, child, port });
    }
    if (UNBOUND) {
      const u = await startUnbound(upPort, dir);
      if (u) servers.push({ label: 'Unbound 1 thread, forward-zone', ...u });
      else console.log('  (Unbound did not start: left out)');
    }
    const res = new Map<string, { p50: number[]; p99: number[]; qps: number[]; lost: number }>();
    for (const sv of servers) await drive(sv.port, 16, 500); // warm up
    for (let r = 0; r < ROUNDS; r++) {
      for (const sv of r % 2 === 0 ? servers : [...servers].reverse()) {
        const e = res.get(sv.label) ?? { p50: [], p99: [], qps: [], lost: 0 };
        const l = await drive(sv.port, 1, N_LAT);
        e.p50.push(pct(l.lat, 50));
        e.p99.push(pct(l.lat, 99));
        const t = await drive(sv.port, 32, N_TPUT);
        e.qps.push(t.qps);
        e.lost += l.lost + t.lost;
        res.set(sv.label, e);
      }
    }
    console.log('  server                                   1 in flight p50 / p99 µs    32 in flight misses/s   lost');
    for (const [k, e] of res) {
      const med = (xs: number[]): number => pct(xs, 50);
      console.log(`  ${k.padEnd(40)} ${us(med(e.p50)).padStart(8)} / ${us(med(e.p99)).padStart(6)}      ${Math.round(med(e.qps)).toString().padStart(12)}      ${e.lost}`);
    }
    const ub = [...res].find(([k]) => k.startsWith('Unbound'))?.[1];
    if (ub) {
      const m = (xs: number[]): number => pct(xs, 50);
      for (const [k, e] of res) {
        if (!k.startsWith('engine')) continue;
        console.log(`  ${k} ÷ Unbound: p50 ${(m(e.p50) / m(ub.p50)).toFixed(2)}, p99 ${(m(e.p99) / m(ub.p99)).toFixed(2)}, misses/s ${(m(e.qps) / m(ub.qps)).toFixed(2)}`);
      }
    }
  } finally {
    for (const sv of servers) sv.child?.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { child, port } = await spawnPort(process.execPath, [path.join(HERE, 'miss', 'responder.cjs')]);
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
  try {
    console.log(`miss path bench: responder on 127.0.0.1:${port}, node ${process.version}${QUICK ? ', --quick' : ''}`);
    if (!only || only.includes('1')) await stages(port);
    if (!only || only.includes('2')) await forwarderRuns(port);
    if (!only || only.includes('4')) await wholeMiss(port);
  } finally {
    child.kill();
  }
}

await main();
