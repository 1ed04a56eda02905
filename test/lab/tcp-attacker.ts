/**
 * A TCP attacker for test/lab/tcp-limits.test.ts, run in the client namespace (its own
 * process, so its sockets count against its own fd limit, not the test's):
 *   idle: connections that connect and send nothing, reopened when closed;
 *   slow: slowloris connections that send one byte of a query every slowByteMs,
 *         reopened when closed.
 * Source addresses rotate over `from` (addresses in several client networks). Runs for
 * durationMs, then closes everything and prints one JSON line of counts.
 *
 *   node --import tsx tcp-attacker.ts '{"server":"198.18.0.1","port":53,"from":[...],
 *     "idle":1000,"slow":300,"slowByteMs":1000,"durationMs":12000}'
 */
import net from 'node:net';

interface Plan {
  server: string;
  port: number;
  from: string[];
  idle: number;
  slow: number;
  slowByteMs: number;
  durationMs: number;
  /** Pause before reopening a closed connection (default 100 ms). */
  reopenMs?: number;
}

const plan = JSON.parse(process.argv[2]!) as Plan;
const counts = { idleConnects: 0, idleClosed: 0, slowConnects: 0, slowClosed: 0, slowBytes: 0, errors: 0, maxOpen: 0 };
let open = 0;
let running = true;
let next = 0;
const socks = new Set<net.Socket>();
// A query's first bytes: length prefix 0x001d, then a header; never finished.
const SLOW_BYTES = Buffer.from([0x00, 0x1d, 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);

function connect(kind: 'idle' | 'slow'): void {
  if (!running) return;
  const localAddress = plan.from[next++ % plan.from.length]!;
  const s = net.connect({ host: plan.server, port: plan.port, localAddress });
  socks.add(s);
  let timer: NodeJS.Timeout | undefined;
  let sent = 0;
  let connected = false;
  s.on('connect', () => {
    connected = true;
    open++;
    counts.maxOpen = Math.max(counts.maxOpen, open);
    if (kind === 'idle') {
      counts.idleConnects++;
      return;
    }
    counts.slowConnects++;
    const drip = (): void => {
      if (s.destroyed) return;
      s.write(SLOW_BYTES.subarray(sent % SLOW_BYTES.length, (sent % SLOW_BYTES.length) + 1));
      sent++;
      counts.slowBytes++;
      timer = setTimeout(drip, plan.slowByteMs);
    };
    drip();
  });
  s.on('data', () => {});
  s.on('error', () => counts.errors++);
  s.on('close', () => {
    if (timer) clearTimeout(timer);
    socks.delete(s);
    if (connected) open--;
    if (kind === 'idle') counts.idleClosed++;
    else counts.slowClosed++;
    if (running) setTimeout(() => connect(kind), plan.reopenMs ?? 100);
  });
}

for (let i = 0; i < plan.idle; i++) connect('idle');
for (let i = 0; i < plan.slow; i++) connect('slow');
setTimeout(() => {
  running = false;
  for (const s of socks) s.destroy();
  process.stdout.write(JSON.stringify(counts) + '\n');
  process.exit(0);
}, plan.durationMs);
