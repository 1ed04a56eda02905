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
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { resolveConfig, SETTINGS, type IntSetting } from './config.js';
import { DEFAULT_ALLOW } from './edge/acl.js';
import { interfaceOwner } from './edge/owner.js';
import { HeimdallError, operatorMessage } from './errors.js';
import { loadAddon } from './native/addon.js';
import { createService } from './service/service.js';

/** A commander parser for an integer setting, with the bounds of SETTINGS. */
function int(name: IntSetting) {
  const s = SETTINGS[name];
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < s.min || n > s.max) throw new InvalidArgumentError(`${s.flag} must be an integer from ${s.min} to ${s.max}`);
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
  if (process.getuid?.() !== 0) throw new HeimdallError('E_NOT_ROOT', 'must run as root: loading XDP needs CAP_BPF and CAP_NET_ADMIN (try sudo)');
}

/** Runs the service in the foreground until SIGINT or SIGTERM, then detaches. */
async function attach(iface: string, o: Record<string, unknown>): Promise<void> {
  requireRoot();
  const cfg = resolveConfig({ ...o, iface, upstream: String(o.upstream) }, rxQueues);
  const svc = createService(cfg);
  await svc.start();
  console.log(`heimdall-xdp serving ${svc.summary}; SIGINT or SIGTERM detaches`);
  await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
  await svc.stop();
  console.log(`detached from ${cfg.iface}`);
}

export function buildProgram(): Command {
  const program = new Command('heimdall-xdp')
    .description('Caching DNS forwarder whose hottest answers are served by XDP from a BPF map')
    .showHelpAfterError('(run with --help for usage)');

  const flag = (name: IntSetting, short?: string): [string, string, (v: string) => number] => {
    const s = SETTINGS[name];
    return [`${short ? `${short}, ` : ''}${s.flag} <n>`, s.help, int(name)];
  };
  program
    .command('attach')
    .description('attach to an interface and serve DNS until SIGINT or SIGTERM, then detach')
    .argument('<iface>', 'network interface to serve on')
    .requiredOption('-u, --upstream <list>', 'upstream resolvers, comma separated: addr[:port], [v6addr]:port')
    .option(...flag('port', '-p'), SETTINGS.port.default)
    .option('-m, --mode <mode>', 'XDP mode: auto, native or generic', 'auto')
    .option(...flag('queues', '-q'))
    .option(...flag('cacheSize'), SETTINGS.cacheSize.default)
    .option(...flag('hotSize'))
    .option(...flag('promoteAfter'), SETTINGS.promoteAfter.default)
    .option(...flag('udpSize'), SETTINGS.udpSize.default)
    .option(...flag('tcpMaxConnections'), SETTINGS.tcpMaxConnections.default)
    .option(...flag('tcpMaxPerClient'), SETTINGS.tcpMaxPerClient.default)
    .option(...flag('tcpIdleTimeout'), SETTINGS.tcpIdleTimeout.default)
    .option(...flag('cacheBytes'))
    .option(...flag('upstreamInflight'), SETTINGS.upstreamInflight.default)
    .option(...flag('upstreamInflightTotal'), SETTINGS.upstreamInflightTotal.default)
    .option(...flag('upstreamClientShare'), SETTINGS.upstreamClientShare.default)
    .option(...flag('upstreamTcpConns'), SETTINGS.upstreamTcpConns.default)
    .option(...flag('upstreamTcpPipeline'), SETTINGS.upstreamTcpPipeline.default)
    .option('--no-xdp-answers', 'XDP answers nothing and redirects every query to the workers (measures the userspace path)')
    .option('--no-af-xdp', 'no AF_XDP workers: queries reach userspace through the kernel stack')
    .option('--no-caps-for-id', 'ask the upstreams in the name\'s own case (default: random case, 0x20, answers must echo it)')
    .option('--no-upstream-cookies', 'send no DNS cookies to the upstreams (default: send them and check the server cookie)')
    .option('--no-minimal-responses', 'relay the authority and additional records of answers (default: answer section, and the SOA and denial proofs of negative answers)')
    .option('--serve-stale', 'answer from expired entries when no upstream answers (RFC 8767)')
    .option('--metrics-listen <addr:port>', 'serve Prometheus metrics at http://addr:port/metrics')
    .option('--listen <addrs>', 'addresses to answer on, comma separated (default: every address of the interface, followed as it changes)')
    .option('--allow <prefixes>', `client prefixes served, comma separated; 'default' = ${DEFAULT_ALLOW.join(',')}; 'any' = everyone (default: default)`)
    .option('--deny <prefixes>', 'client prefixes dropped without a reply (the longest matching prefix of --allow/--deny wins; others get REFUSED)')
    .option(...flag('rrl'), SETTINGS.rrl.default)
    .option(...flag('rrlSlip'), SETTINGS.rrlSlip.default)
    .option(...flag('rrlWindow'), SETTINGS.rrlWindow.default)
    .option(...flag('rrlAll'), SETTINGS.rrlAll.default)
    .option(...flag('rrlV4Prefix'), SETTINGS.rrlV4Prefix.default)
    .option(...flag('rrlV6Prefix'), SETTINGS.rrlV6Prefix.default)
    .option(...flag('rrlBuckets'), SETTINGS.rrlBuckets.default)
    .option('--rrl-exempt <prefixes>', 'client prefixes whose responses are never rate limited')
    .option('--force', 'take the interface over from a foreign XDP program or a live heimdall-xdp')
    .action(attach);

  program
    .command('detach')
    .description('remove a heimdall XDP program left on an interface (never a foreign one)')
    .argument('<iface>')
    .action(async (iface: string) => {
      requireRoot();
      const owner = await interfaceOwner(iface);
      if (owner !== null) throw new HeimdallError('E_IFACE_OWNED', `interface '${iface}' is served by a running heimdall-xdp${owner ? ` (pid ${owner})` : ''}; stop that process instead (it detaches on SIGTERM)`);
      const removed = loadAddon().detachStale(iface);
      console.log(removed ? `detached heimdall from ${iface}` : `no heimdall program on ${iface}`);
    });

  program
    .command('status')
    .description('show the XDP program attached to an interface')
    .argument('<iface>')
    .action(async (iface: string) => {
      requireRoot();
      const s = loadAddon().xdpStatus(iface);
      const owner = await interfaceOwner(iface);
      const by = owner ? `, served by pid ${owner}` : owner === 0 ? ', served by a running heimdall-xdp' : '';
      console.log(s.progId ? `${iface}: XDP program '${s.name}' (id ${s.progId}, ${s.mode} mode${by})` : `${iface}: no XDP program`);
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
