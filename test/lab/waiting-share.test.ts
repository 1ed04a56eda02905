/**
 * One client network flooding one name whose upstream never answers (the blackholed
 * upstream of test/lab/flood.test.ts, on the kernel path) while a second network asks new
 * names. Each network may hold only a quarter of the waiting rooms (the forwarder's
 * maxWaiting and the engine's fetch-table waits, docs/LIMITS.md): the flood's excess is
 * refused as its own (`limit="client_waiting"`), the waiting room never fills, and the
 * second network's names go upstream (SERVFAIL at the 4 s deadline here, the upstream being
 * dark) instead of SERVFAIL at once for a waiting room the flood filled.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';
import { addSecondNetwork, expectShareHeld, floodWithOtherNetwork } from '../helpers/flood.js';

describePrivileged('a one-name flood from one network leaves the waiting room to the others', { netns: true, tools: ['dnsperf', 'nsd', 'curl'] }, () => {
  const lab = new Lab('ws');
  let svc: Service;
  let dir: string;

  suiteService(
    lab,
    {
      zone: 100,
      // --no-af-xdp: one engine, so its waiting rooms are the ones the flood meets.
      // --upstream-inflight 256: rooms of 1,024 each (4 ×), so a flood the kernel path takes
      // without dropping datagrams (on a shared 2-core machine) fills them many times over.
      args: ['--upstream', ADDR.upstream4, '--cache-size', '20000', '--rrl', '0', '--no-af-xdp', '--upstream-inflight', '256', '--metrics-listen', '127.0.0.1:9153'],
      setup: () => {
        dir = mkdtempSync(join(tmpdir(), 'hx-wshare-'));
        addSecondNetwork(lab);
      },
      cleanup: () => {
        if (dir) rmSync(dir, { recursive: true, force: true });
      },
    },
    (s) => (svc = s),
  );

  it("1,500 q/s of one stalled name from one network: the other network's new names still go upstream", async () => {
    writeFileSync(join(dir, 'one'), 'slow.lab.example A\n');
    // The waiting rooms fill within a second or two; then the other network asks, 5 new names a second.
    const r = await floodWithOtherNetwork(lab, svc, dir, { floodFile: join(dir, 'one'), qps: 1500, tag: 'w' });
    expect(r.flood.sent).toBeGreaterThan(10_000);
    // The flood met its own network's share, never the whole room; the other network's
    // names all went upstream.
    expectShareHeld('waiting share', r, 'client_waiting', 'waiting');
  }, 60_000);
});
