/**
 * The userspace miss path as one process, for scripts/bench/miss-path.ts: a kernel UDP
 * socket on 127.0.0.1 → DnsEngine.handle → Forwarder (to the responder) → the reply.
 * No AF_XDP: it measures the engine and the forwarder, as Unbound is measured beside it.
 *   tsx scripts/bench/miss/server.ts <upstream port> <port reuse>
 * Prints its port, then serves until killed.
 */
import dgram from 'node:dgram';
import { DnsEngine } from '../../../src/engine/engine.js';
import { Forwarder } from '../../../src/upstream/forwarder.js';

const upPort = Number(process.argv[2]);
const reuse = Number(process.argv[3] ?? 1);
const fwd = new Forwarder({ upstreams: [{ host: '127.0.0.1', port: upPort, family: 4 }], portReuse: reuse, maxInflight: 4096 });
const engine = new DnsEngine({ resolver: fwd, cacheSize: 200_000 });
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  const out = Buffer.alloc(1232);
  const n = engine.handle(m, 0, m.length, out, 0, false, 1232);
  if (typeof n === 'number') {
    if (n > 0) s.send(out.subarray(0, n), r.port, r.address);
    return;
  }
  n.then((k) => {
    if (k > 0) s.send(out.subarray(0, k), r.port, r.address);
  }, () => {});
});
// --cpu-prof writes its profile at exit: exit on the bench's SIGTERM.
process.on('SIGTERM', () => process.exit(0));
s.bind(0, '127.0.0.1', () => console.log(s.address().port));
