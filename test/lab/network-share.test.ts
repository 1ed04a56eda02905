/**
 * The share of the process's upstream budget one client network may hold, counted across
 * every engine. Here: two AF_XDP workers and the main thread, each engine allowed 1,024
 * questions in flight and the process 1,024, a network 50% of either. Counted per engine, a
 * network spread by RSS over both queues held 512 on each, the whole process budget, and
 * every other network's new names got SERVFAIL at once (limit="process"). Counted for the
 * process, it holds 512 (limit="client_process"), and another network's new names go
 * upstream (SERVFAIL at the 4 s deadline here, the upstream being dark).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';
import { addSecondNetwork, expectShareHeld, floodWithOtherNetwork, uniqueNames } from '../helpers/flood.js';

describePrivileged("one network's unique-name flood holds its share of the process, not of each engine", { netns: true, tools: ['dnsperf', 'nsd', 'curl'] }, () => {
  const lab = new Lab('ns');
  let svc: Service;
  let dir: string;

  suiteService(
    lab,
    {
      zone: 100,
      args: [
        '--upstream', ADDR.upstream4, '--cache-size', '20000', '--rrl', '0', '--metrics-listen', '127.0.0.1:9153',
        '--upstream-inflight', '1024', '--upstream-inflight-total', '1024', '--upstream-client-share', '50',
      ],
      setup: () => {
        dir = mkdtempSync(join(tmpdir(), 'hx-nshare-'));
        addSecondNetwork(lab);
      },
      cleanup: () => {
        if (dir) rmSync(dir, { recursive: true, force: true });
      },
    },
    (s) => (svc = s),
  );

  it("3,000 q/s of unique names from one network over both queues: the other network's new names still go upstream", async () => {
    // Eight sockets (source ports): the client's veth spreads them over both rx queues.
    const r = await floodWithOtherNetwork(lab, svc, dir, { floodFile: uniqueNames(dir, 'unique', 30_000, 'u'), qps: 3000, tag: 'n' });
    expect(r.flood.sent).toBeGreaterThan(20_000);
    // The flood met its network's share of the process, never the process's limit; the
    // other network's names all went upstream.
    expectShareHeld('network share', r, 'client_process', 'process');
  }, 60_000);
});
