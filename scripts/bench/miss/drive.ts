// Drives a server with new names, c in flight, n queries: tsx scripts/bench/miss/drive.ts <port> <c> <n> (for profiling server.ts by hand).
import dgram from 'node:dgram';
import { textToWire } from '../../../src/dns/name.js';
import { buildQuery } from '../../../src/upstream/wire.js';
const port = Number(process.argv[2]); const c = Number(process.argv[3]); const n = Number(process.argv[4]);
const s = dgram.createSocket('udp4');
await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
const w = new Map<number, () => void>();
s.on('message', (m) => { const f = w.get(m.readUInt16BE(0)); w.delete(m.readUInt16BE(0)); f?.(); });
let left = n, id = 1, seq = 0; const t0 = performance.now();
await Promise.all(Array.from({ length: c }, async () => { while (left-- > 0) { const i = id++ & 0xffff; const q = buildQuery({ name: textToWire(`d${seq++}-${process.pid}.x.test`), qtype: 1, qclass: 1, dnssecOk: false }, i, 1232);
  await new Promise<void>((r) => { const t = setTimeout(r, 1000); w.set(i, () => { clearTimeout(t); r(); }); s.send(q, port, '127.0.0.1'); }); } }));
console.log(`${Math.round(n / ((performance.now() - t0) / 1000))} q/s`); s.close();
