/**
 * Worker-thread side of the AF_XDP safety test: opens one XskSocket per queue (in the
 * same process as the XdpProgram that owns the XSKMAP, whose fd it gets as a number),
 * answers queries with the echo responder, and when the host raises `go` ends in the
 * way the host asked, without ever calling close():
 *   terminate  the host calls worker.terminate() (this side does nothing)
 *   terminate-busy  the host calls worker.terminate() while the poll callback spins
 *   exit       process.exit() inside the poll callback, with received frames held
 *   throw      an uncaught exception inside the poll callback, with frames held
 *   natural    stops polling and lets the event loop run empty
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readlinkSync } from 'node:fs';
import { XskSocket } from '../../../src/io/xsk.js';
import { makeEchoHandler } from './echo.js';

interface Data {
  ifname: string;
  queues: number;
  xsksMapFd: number;
  how: 'terminate' | 'terminate-busy' | 'exit' | 'throw' | 'natural';
  /** [0]: batches served, [1]: go flag set by the host, [2]: set while the callback spins. */
  shared: Int32Array;
}

const d = workerData as Data;
const counters = { replied: 0, released: 0, batches: 0, maxBatch: 0 };
const echo = makeEchoHandler(counters);
const socks: XskSocket[] = [];
for (let q = 0; q < d.queues; q++) socks.push(XskSocket.open({ ifname: d.ifname, queueId: q, xsksMapFd: d.xsksMapFd, ringSize: 256 }));

function serve(sock: XskSocket): void {
  if (Atomics.load(d.shared, 1) === 1 && d.how !== 'terminate') {
    const n = sock.receive(); // frames now held by this thread, never given back
    if (d.how === 'exit') process.exit(3);
    if (d.how === 'throw') throw new Error(`worker dies holding ${n} frames`);
    if (d.how === 'terminate-busy') {
      Atomics.store(d.shared, 2, 1);
      for (;;); // inside the native poll callback until TerminateExecution stops it
    }
    for (const s of socks) s.stopReadable();
    return;
  }
  echo(sock);
  Atomics.add(d.shared, 0, 1);
}

for (const s of socks) s.onReadable(serve);
if (d.how === 'natural') {
  // The go flag is also seen without traffic: when the load ended before the host raised
  // it, no poll callback would ever run again and the worker would wait forever.
  const t = setInterval(() => {
    if (Atomics.load(d.shared, 1) !== 1) return;
    for (const s of socks) s.stopReadable();
    clearInterval(t);
  }, 5);
}
parentPort!.postMessage({
  ready: true,
  inodes: socks.map((s) => readlinkSync(`/proc/self/fd/${s.fd}`)),
  modes: socks.map((s) => s.mode),
});
