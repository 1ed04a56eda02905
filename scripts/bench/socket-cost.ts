/**
 * Measurement behind docs/FORWARDER.md "fresh socket per query": the cost of
 * a new randomly bound UDP socket per query against a pool of long-lived
 * sockets, and of the whole Forwarder, on loopback with the upstream in a
 * child process (so the CPU figures are the client's alone).
 *
 * A benchmark, not a test: its numbers are for reading.
 *   npx tsx scripts/bench/socket-cost.ts
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { textToWire } from '../../src/dns/name.js';
import { Forwarder } from '../../src/upstream/forwarder.js';
import { kernelPortRange, randomPort, randomU16 } from '../../src/upstream/random.js';
import { buildQuery } from '../../src/upstream/wire.js';

const ECHO = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => { m[2] |= 0x80; s.send(m, r.port, r.address); });
s.bind(0, '127.0.0.1', () => console.log(s.address().port));
`;

const N = 20_000;
const Q = { name: textToWire('bench.example.test'), qtype: 1, qclass: 1, dnssecOk: false };

async function run(label: string, concurrency: number, one: (i: number) => Promise<void>): Promise<string> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < N) await one(next++);
    }),
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const line = `${label.padEnd(34)} c=${String(concurrency).padEnd(3)} ${Math.round(N / (ms / 1000))
    .toString()
    .padStart(7)} q/s  ${((cpu.user + cpu.system) / N).toFixed(1).padStart(5)} us CPU/query`;
  console.log(line);
  return line;
}

async function main(): Promise<void> {
  const child: ChildProcess = spawn(process.execPath, ['-e', ECHO], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  try {
    const range = kernelPortRange();
    const wire = Buffer.from(buildQuery(Q, 0, 1232));

    let collisions = 0;
    // As src/upstream/udp.ts does: a random port, another one if it is taken (about 1 in 28k per open socket).
    const fresh = (): Promise<void> =>
      new Promise((resolve, reject) => {
        const s = dgram.createSocket('udp4');
        s.once('error', (e: NodeJS.ErrnoException) => {
          s.close();
          if (e.code !== 'EADDRINUSE') return reject(e);
          collisions++;
          fresh().then(resolve, reject);
        });
        s.once('message', () => {
          s.close();
          resolve();
        });
        s.bind(randomPort(range), '0.0.0.0', () => s.send(wire, port, '127.0.0.1'));
      });

    const pool: dgram.Socket[] = [];
    const waiting = new Map<number, () => void>();
    for (let i = 0; i < 64; i++) {
      const s = dgram.createSocket('udp4');
      s.on('message', (m) => {
        const k = i * 65536 + m.readUInt16BE(0);
        const w = waiting.get(k);
        waiting.delete(k);
        w?.();
      });
      await new Promise<void>((r) => s.bind(0, '0.0.0.0', r));
      pool.push(s);
    }
    const pooled = (i: number): Promise<void> =>
      new Promise((resolve) => {
        const si = i % 64;
        const id = randomU16();
        const m = Buffer.from(wire);
        m.writeUInt16BE(id, 0);
        waiting.set(si * 65536 + id, resolve);
        pool[si]!.send(m, port, '127.0.0.1');
      });

    const fwd = new Forwarder({ upstreams: [{ host: '127.0.0.1', port, family: 4 }], portReuse: 1 });
    const viaForwarder = async (i: number): Promise<void> => {
      // Distinct names, so nothing is coalesced.
      const name = textToWire(`b${i}.example.test`);
      await fwd.resolve({ ...Q, name });
    };

    const lines: string[] = [];
    for (const c of [1, 64]) {
      lines.push(await run('fresh socket, random port', c, fresh));
      lines.push(await run('pool of 64 sockets (ID demux)', c, pooled));
      lines.push(await run('Forwarder.resolve (fresh socket)', c, viaForwarder));
    }
    console.log(`random-port collisions (EADDRINUSE, retried): ${collisions} in ${2 * N} binds`);
    await fwd.close();
    for (const s of pool) s.close();
  } finally {
    child.kill();
  }
}

await main();
