/**
 * The three-host lab (scripts/lab.sh) for tests: its own prefix per test process, the
 * service started inside the appliance namespace, and real clients in the client one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect } from 'vitest';
import { LAB_ALLOW } from './edge.js';
import { fileURLToPath } from 'node:url';
import { sh } from './netns.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export const ADDR = {
  client4: '198.18.0.2',
  appliance4: '198.18.0.1',
  client6: 'fd00:0:0:1::2',
  appliance6: 'fd00:0:0:1::1',
  upstream4: '198.18.1.2',
  upstream6: 'fd00:0:0:2::2',
};

export class Lab {
  readonly prefix: string;
  readonly applianceIf: string;
  readonly ns: { client: string; appliance: string; upstream: string };

  /** `queues`: rx/tx queues of the client-facing veth pair (lab.sh HX_LAB_QUEUES; default 2). */
  constructor(tag: string, readonly queues = 2) {
    this.prefix = `${tag}${process.pid % 10000}`.slice(0, 6);
    this.applianceIf = `${this.prefix}a0`;
    this.ns = { client: `${this.prefix}-client`, appliance: `${this.prefix}-appliance`, upstream: `${this.prefix}-upstream` };
  }

  script(...args: string[]): string {
    return sh('env', [`HX_LAB=${this.prefix}`, `HX_LAB_QUEUES=${this.queues}`, 'bash', `${ROOT}/scripts/lab.sh`, ...args], { timeout: 60_000 });
  }

  up(zoneSize = 1000): void {
    this.script('up', String(zoneSize));
  }

  down(): void {
    try {
      this.script('down');
    } catch {
      /* already down */
    }
  }

  /** Runs a command in a lab host; never throws (the output says what happened). */
  exec(host: 'client' | 'appliance' | 'upstream', cmd: string, args: string[], timeout = 20_000): string {
    return sh('ip', ['netns', 'exec', this.ns[host], cmd, ...args], { allowFail: true, timeout });
  }

  /** dig from the client; +tries=1 so a lost answer shows as a failure, not a retry. */
  dig(args: string[], server = ADDR.appliance4): string {
    return this.exec('client', 'dig', [`@${server}`, '+tries=1', '+time=2', ...args]);
  }

  /** Starts heimdall-xdp in the appliance (from source, as the tests see it), with `env` added to its environment. */
  startService(args: string[], env: Record<string, string> = {}): Service {
    // The lab's prefixes are not in the default access list (it refuses public addresses).
    // A config file says its own (a flag would override it).
    const allow = args.includes('--allow') || args.includes('--config') ? [] : ['--allow', LAB_ALLOW];
    const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const p = spawn('ip', ['netns', 'exec', this.ns.appliance, 'env', ...vars, process.execPath, '--import', 'tsx', `${ROOT}/src/bin.ts`, 'attach', this.applianceIf, ...allow, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new Service(p, this);
  }

  /** One-shot CLI run in the appliance namespace: exit code and output. */
  cli(args: string[], timeoutMs = 30_000, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    return runCli(['ip', 'netns', 'exec', this.ns.appliance, 'env', ...vars, process.execPath, '--import', 'tsx', `${ROOT}/src/bin.ts`, ...args], timeoutMs);
  }
}

export function runCli(argv: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGTERM'), timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

export class Service {
  stdout = '';
  stderr = '';
  exitCode: number | null = null;
  private readonly exited: Promise<number | null>;

  constructor(
    readonly proc: ChildProcess,
    private readonly lab: Lab,
  ) {
    proc.stdout!.on('data', (d) => (this.stdout += d));
    proc.stderr!.on('data', (d) => (this.stderr += d));
    this.exited = new Promise((r) =>
      proc.on('exit', (code) => {
        this.exitCode = code;
        r(code);
      }),
    );
  }

  /** Resolves once the service says it is serving; rejects if it exits or times out. */
  async ready(timeoutMs = 40_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!/serving/.test(this.stdout)) {
      if (this.exitCode !== null) throw new Error(`service exited ${this.exitCode}: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`service not ready: ${this.stdout} ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  signal(sig: NodeJS.Signals): void {
    // ip netns exec execs env, which execs node: this PID is the service itself.
    this.proc.kill(sig);
  }

  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (this.exitCode !== null) return this.exitCode;
    this.signal('SIGTERM');
    const t = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }

  /** The service's Prometheus text, fetched inside the appliance namespace. */
  metrics(port = 9153): Record<string, number> {
    const text = this.lab.exec('appliance', 'curl', ['-s', '--max-time', '3', `http://127.0.0.1:${port}/metrics`]);
    const out: Record<string, number> = {};
    for (const line of text.split('\n')) {
      const m = /^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$/.exec(line);
      if (m) out[m[1]!] = Number(m[2]);
    }
    return out;
  }

  /**
   * The metrics once `ready(m)` holds, fetched every 100 ms for up to `ms`; the last
   * fetch if it never does (the caller's assertions then say what is missing). Workers
   * publish their counters once a second while they serve (src/engine/upkeep.ts), so a
   * test asks for the change it expects instead of sleeping a fixed time.
   */
  metricsWhen(ready: (m: Record<string, number>) => boolean, ms = 3000, port = 9153): Record<string, number> {
    const end = Date.now() + ms;
    for (;;) {
      const m = this.metrics(port);
      if (ready(m) || Date.now() >= end) return m;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
}

/**
 * One service for a whole suite: the lab brought up (zone of `zone` names), `setup` run,
 * the service started with `args` and ready, handed to `ready`; afterwards it must stop
 * cleanly (exit 0), then the lab goes down and `cleanup` runs.
 */
export function suiteService(
  lab: Lab,
  o: { zone: number; args: string[]; setup?: () => void; cleanup?: () => void },
  ready: (svc: Service) => void,
): void {
  let svc: Service | undefined;
  beforeAll(async () => {
    lab.up(o.zone);
    o.setup?.();
    svc = lab.startService(o.args);
    ready(svc);
    await svc.ready();
  }, 90_000);
  afterAll(async () => {
    try {
      if (svc) expect(await svc.stop()).toBe(0);
    } finally {
      lab.down();
      o.cleanup?.();
    }
  }, 60_000);
}
