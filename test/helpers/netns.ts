/**
 * Network namespaces for tests, created and removed by the test itself: a client and an
 * appliance joined by a veth pair, no default route, addresses from 198.18.0.0/15 and
 * fd00::/8. Names carry the test process's PID so parallel runs do not collide.
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

export function sh(cmd: string, args: string[], opts: { allowFail?: boolean; timeout?: number } = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: opts.timeout ?? 20_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if (opts.allowFail) return (e as { stdout?: string }).stdout ?? '';
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.stderr || err.message}`);
  }
}

export interface PairLab {
  client: string;
  appliance: string;
  clientIf: string;
  applianceIf: string;
  client4: string;
  appliance4: string;
  client6: string;
  appliance6: string;
  destroy(): void;
}

/** A client namespace and an appliance namespace joined by one veth (2 rx queues). */
export function createPairLab(tag: string, opts: { peerXdpPass?: string } = {}): PairLab {
  const id = `${tag}${process.pid % 100000}`;
  const lab: PairLab = {
    client: `hxc-${id}`,
    appliance: `hxa-${id}`,
    clientIf: `hc${id}`.slice(0, 15),
    applianceIf: `ha${id}`.slice(0, 15),
    client4: '198.18.0.2',
    appliance4: '198.18.0.1',
    client6: 'fd00:1::2',
    appliance6: 'fd00:1::1',
    destroy() {
      sh('ip', ['netns', 'del', lab.client], { allowFail: true });
      sh('ip', ['netns', 'del', lab.appliance], { allowFail: true });
    },
  };
  lab.destroy();
  try {
    sh('ip', ['netns', 'add', lab.client]);
    sh('ip', ['netns', 'add', lab.appliance]);
    sh('ip', ['-n', lab.client, 'link', 'add', lab.clientIf, 'numrxqueues', '2', 'numtxqueues', '2', 'type', 'veth',
      'peer', 'name', lab.applianceIf, 'netns', lab.appliance, 'numrxqueues', '2', 'numtxqueues', '2']);
    for (const [ns, ifname, a4, a6] of [
      [lab.client, lab.clientIf, lab.client4, lab.client6],
      [lab.appliance, lab.applianceIf, lab.appliance4, lab.appliance6],
    ] as const) {
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      sh('ip', ['-n', ns, 'addr', 'add', `${a4}/24`, 'dev', ifname]);
      sh('ip', ['-n', ns, '-6', 'addr', 'add', `${a6}/64`, 'dev', ifname, 'nodad']);
      sh('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
    }
    if (opts.peerXdpPass) {
      // A veth peer only takes XDP_TX frames when it runs XDP itself (see ARCHITECTURE.md).
      sh('ip', ['-n', lab.client, 'link', 'set', 'dev', lab.clientIf, 'xdpdrv', 'obj', opts.peerXdpPass, 'sec', 'xdp']);
    }
    // Links just brought up can lose the first neighbour solicitation; resolve both
    // neighbours now so the first query of a test is not delayed by a 1 s NDP retry.
    waitReachable(lab.client, lab.appliance4);
    waitReachable(lab.client, lab.appliance6);
  } catch (e) {
    lab.destroy();
    throw e;
  }
  return lab;
}

/** Pings addr from ns until it answers (at most ~5 s). */
export function waitReachable(ns: string, addr: string): void {
  for (let i = 0; i < 10; i++) {
    const out = sh('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '1', '-i', '0.2', addr], { allowFail: true });
    if (/1 received/.test(out)) return;
  }
  throw new Error(`${addr} not reachable from namespace ${ns}`);
}

/** A long-lived child speaking JSON lines, e.g. the lab agent inside a namespace. */
export class JsonChild {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly waiting: ((v: unknown) => void)[] = [];
  private stderr = '';

  constructor(cmd: string, args: string[]) {
    this.proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr.on('data', (d) => (this.stderr += d));
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const w = this.waiting.shift();
      if (w) w(JSON.parse(line));
    });
    this.proc.on('exit', () => {
      for (const w of this.waiting.splice(0)) w({ error: `child exited: ${this.stderr}` });
    });
  }

  async call<T = Record<string, unknown>>(msg: Record<string, unknown>, timeoutMs = 20_000): Promise<T> {
    const reply = new Promise<unknown>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply to ${JSON.stringify(msg)}; stderr: ${this.stderr}`)), timeoutMs);
      this.waiting.push((v) => {
        clearTimeout(t);
        resolve(v);
      });
    });
    this.proc.stdin.write(JSON.stringify(msg) + '\n');
    const r = (await reply) as T & { error?: string };
    if (r && typeof r === 'object' && 'error' in r && r.error) throw new Error(String(r.error));
    return r;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
  }
}
