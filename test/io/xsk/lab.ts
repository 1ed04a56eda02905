/** Helpers of the AF_XDP lab tests: the agent in the appliance namespace, load from the client. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { JsonChild, sh, type PairLab } from '../../helpers/netns.js';
import type { XskStats } from '../../../src/io/xsk.js';

const AGENT = fileURLToPath(new URL('./agent.ts', import.meta.url));
const FLOOD = fileURLToPath(new URL('./flood.ts', import.meta.url));

export function startAgent(lab: PairLab): JsonChild {
  return new JsonChild('ip', ['netns', 'exec', lab.appliance, process.execPath, '--expose-gc', '--import', 'tsx', AGENT]);
}

/** Detaches and ends an agent, then removes its namespaces (afterAll of the suites). */
export async function stopAgent(agent: JsonChild | undefined, lab: PairLab | undefined): Promise<void> {
  if (agent) {
    await agent.call({ cmd: 'detach' }).catch(() => undefined);
    agent.kill();
  }
  lab?.destroy();
}

export interface FloodResult {
  sent: number;
  received: number;
  bad: number;
  sockets: number;
}

/** Queries from many source ports in the client namespace (see flood.ts); resolves when it exits. */
export function flood(
  lab: PairLab,
  a: { server: string; sockets?: number; perSocket?: number; waitMs?: number; spreadMs?: number },
): Promise<FloodResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'ip',
      ['netns', 'exec', lab.client, process.execPath, '--import', 'tsx', FLOOD, JSON.stringify(a)],
      { encoding: 'utf8', timeout: 20_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`flood failed: ${stderr || err.message}`));
        else resolve(JSON.parse(stdout) as FloodResult);
      },
    );
  });
}

export function dig(lab: PairLab, server: string, args: string[]): string {
  return sh('ip', ['netns', 'exec', lab.client, 'dig', `@${server}`, '+tries=1', '+time=2', ...args], { allowFail: true });
}

export interface AgentStats {
  sockets: { queue: number; stats: XskStats; echo: { replied: number; released: number; batches: number; maxBatch: number } }[];
  xdp: Record<string, number>;
}
