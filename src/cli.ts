/**
 * heimdall-xdp: the command an operator runs.
 *
 *   heimdall-xdp attach <iface> --upstream <addr[:port],...> [options]   run in the foreground
 *   heimdall-xdp detach <iface>                                          remove a program left behind
 *   heimdall-xdp status <iface>                                          what XDP program is attached
 *
 * Every operator mistake ends in one line on stderr that says what to do and a
 * non-zero exit, never a stack trace.
 */
import { Command, InvalidArgumentError } from 'commander';
import { readdirSync } from 'node:fs';
import { operatorMessage } from './errors.js';
import { loadAddon } from './native/addon.js';
import { runAttach, type AttachOptions } from './service/service.js';

function int(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
}

export function rxQueues(iface: string): number {
  try {
    return readdirSync(`/sys/class/net/${iface}/queues`).filter((q) => q.startsWith('rx-')).length || 1;
  } catch {
    return 1;
  }
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('must run as root: loading XDP needs CAP_BPF and CAP_NET_ADMIN (try sudo)');
}

export function buildProgram(): Command {
  const program = new Command('heimdall-xdp')
    .description('Caching DNS forwarder whose hottest answers are served by XDP from a BPF map')
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('attach')
    .description('attach to an interface and serve DNS until SIGINT or SIGTERM, then detach')
    .argument('<iface>', 'network interface to serve on')
    .requiredOption('-u, --upstream <list>', 'upstream resolvers, comma separated: addr[:port], [v6addr]:port')
    .option('-p, --port <n>', 'UDP and TCP port served', int('--port', 1, 65535), 53)
    .option('-m, --mode <mode>', 'XDP mode: auto, native or generic', 'auto')
    .option('-q, --queues <n>', 'rx queues to serve with one AF_XDP worker each (default: all of the interface)', int('--queues', 1, 64))
    .option('--cache-size <n>', 'userspace cache entries per worker', int('--cache-size', 16, 50_000_000), 100_000)
    .option('--hot-size <n>', 'XDP hot map entries (default: 10% of the cache size)', int('--hot-size', 1, 10_000_000))
    .option('--promote-after <n>', 'cache hits before a name is promoted into the hot map', int('--promote-after', 1, 1000), 3)
    .option('--udp-size <n>', 'EDNS UDP payload size advertised and served', int('--udp-size', 512, 4096), 1232)
    .option('--no-xdp-answers', 'XDP answers nothing and redirects every query to the workers (measures the userspace path)')
    .option('--no-af-xdp', 'no AF_XDP workers: queries reach userspace through the kernel stack')
    .option('--serve-stale', 'answer from expired entries when no upstream answers (RFC 8767)')
    .option('--metrics-listen <addr:port>', 'serve Prometheus metrics at http://addr:port/metrics')
    .option('--force', 'replace a foreign XDP program already attached to the interface')
    .action(async (iface: string, o: Record<string, unknown>) => {
      requireRoot();
      if (!['auto', 'native', 'generic'].includes(String(o.mode))) throw new Error(`--mode must be auto, native or generic, not '${String(o.mode)}'`);
      const opts: AttachOptions = {
        iface,
        upstream: String(o.upstream),
        port: o.port as number,
        mode: o.mode as AttachOptions['mode'],
        queues: (o.queues as number | undefined) ?? rxQueues(iface),
        cacheSize: o.cacheSize as number,
        hotSize: (o.hotSize as number | undefined) ?? Math.max(1, Math.floor((o.cacheSize as number) / 10)),
        promoteAfter: o.promoteAfter as number,
        udpSize: o.udpSize as number,
        xdpAnswers: o.xdpAnswers !== false,
        afXdp: o.afXdp !== false,
        serveStale: Boolean(o.serveStale),
        metricsListen: o.metricsListen as string | undefined,
        force: Boolean(o.force),
      };
      await runAttach(opts);
    });

  program
    .command('detach')
    .description('remove a heimdall XDP program left on an interface (never a foreign one)')
    .argument('<iface>')
    .action((iface: string) => {
      requireRoot();
      const removed = loadAddon().detachStale(iface);
      console.log(removed ? `detached heimdall from ${iface}` : `no heimdall program on ${iface}`);
    });

  program
    .command('status')
    .description('show the XDP program attached to an interface')
    .argument('<iface>')
    .action((iface: string) => {
      requireRoot();
      const s = loadAddon().xdpStatus(iface);
      console.log(s.progId ? `${iface}: XDP program '${s.name}' (id ${s.progId}, ${s.mode} mode)` : `${iface}: no XDP program`);
    });
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    process.stderr.write(`heimdall-xdp: ${operatorMessage(e)}\n`);
    process.exit(1);
  }
}
