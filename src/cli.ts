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
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { resolveConfig, SETTINGS, type ConfigInput, type HeimdallConfig, type IntSetting } from './config.js';
import { loadConfigFile, locateError, mergeInput, type LoadedConfig } from './config-file.js';
import { DEFAULT_ALLOW } from './edge/acl.js';
import { interfaceOwner } from './edge/owner.js';
import { HeimdallError, operatorMessage } from './errors.js';
import { attachCaps, missingCaps, type CapName } from './caps.js';
import { loadAddon } from './native/addon.js';
import { announce, log, setLogFormat, LOG_FORMATS } from './log.js';
import { controlRequest, serveControl } from './service/control.js';
import { describeReload } from './service/reload.js';
import { parseQtype } from './service/cache-control.js';
import { textToWire } from './dns/name.js';
import { cacheCommand, statsCommand, upstreamsCommand } from './control-cli.js';
import { createService } from './service/service.js';
import { formatUpstream } from './upstream/upstream.js';

/** A commander parser for an integer setting, with the bounds of SETTINGS. */
function int(name: IntSetting) {
  const s = SETTINGS[name];
  return (v: string): number => {
    // Decimal digits only: Number() would also take 1e3, 0x35, ' 53' and ''.
    const n = /^\d{1,16}$/.test(v) ? Number(v) : NaN;
    if (!Number.isInteger(n) || n < s.min || n > s.max) throw new InvalidArgumentError(`${s.flag} must be a decimal integer from ${s.min} to ${s.max}`);
    return n;
  };
}

/** The version in package.json (dist/ and src/ are both one level under it). */
export function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export function rxQueues(iface: string): number {
  try {
    return readdirSync(`/sys/class/net/${iface}/queues`).filter((q) => q.startsWith('rx-')).length || 1;
  } catch {
    return 1;
  }
}

/** Root, or a user with the capabilities (`need`) as ambient ones: names what is missing. */
function requireRoot(need: readonly CapName[] = attachCaps()): void {
  const missing = missingCaps(need);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0 && missing.length === need.length) {
    throw new HeimdallError('E_NOT_ROOT', `must run as root, or with the capabilities ${need.join(', ')} (loading XDP needs CAP_BPF and CAP_NET_ADMIN; try sudo, or the systemd unit)`);
  }
  throw new HeimdallError('E_NOT_ROOT', `missing capabilities ${missing.join(', ')}: run as root, or grant ${need.join(', ')} (see docs/OPERATIONS.md)`);
}

/** Options that are not settings: never from a config file, never in ConfigInput. */
const NOT_SETTINGS = new Set(['config']);

/** What the command line itself gave (not commander's defaults): these override the file. */
export function cliInput(iface: string | undefined, cmd: Command): Partial<ConfigInput> {
  const o = cmd.opts();
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (NOT_SETTINGS.has(k) || cmd.getOptionValueSource(k) !== 'cli') continue;
    out[k] = v;
  }
  if (iface !== undefined) out.iface = iface;
  return out as Partial<ConfigInput>;
}

/** The config from a file (if any) and the command line, checked: one typed object. */
export function configFrom(file: LoadedConfig | null, cli: Partial<ConfigInput>): HeimdallConfig {
  const input = mergeInput(file, cli);
  if (input.iface === undefined) throw new HeimdallError('E_BAD_OPTION', `no interface: give it after attach${file ? ` or as 'interface:' in ${file.path}` : ''}`);
  if (input.upstream === undefined) throw new HeimdallError('E_BAD_OPTION', `no upstream: give --upstream${file ? ` or 'upstreams:' in ${file.path}` : ''}`);
  try {
    return resolveConfig(input, rxQueues);
  } catch (e) {
    throw locateError(e, file, cli);
  }
}

/**
 * Runs the service in the foreground until SIGINT or SIGTERM, then detaches. SIGHUP (or
 * `heimdall-xdp reload <iface>` over the control socket) reads the config file again
 * and changes what can change while running; a file with a mistake is refused and the
 * running config kept.
 */
async function attach(iface: string | undefined, o: Record<string, unknown>, cmd: Command): Promise<void> {
  const path = typeof o.config === 'string' ? o.config : undefined;
  const file = path !== undefined ? loadConfigFile(path) : null;
  const cli = cliInput(iface, cmd);
  const cfg = configFrom(file, cli);
  setLogFormat(cfg.logFormat);
  requireRoot();
  const svc = createService(cfg);
  let started = false;
  async function reload(): Promise<string> {
    if (!started) throw new HeimdallError('E_NOT_RUNNING', 'still starting: reload again once it serves');
    if (path === undefined) throw new HeimdallError('E_BAD_OPTION', 'started without --config: there is no file to read again (flags cannot change while running)');
    const next = configFrom(loadConfigFile(path), cli);
    const r = await svc.reload(next);
    setLogFormat(svc.config.logFormat);
    const w = r.workers.live > r.workers.confirmed ? ` (${r.workers.live - r.workers.confirmed} of ${r.workers.live} workers did not confirm; a worker restarted since has the new settings)` : '';
    return `${describeReload(r.diff)}${w}`;
  }
  const reloadLogged = async (): Promise<string> => {
    try {
      const msg = await reload();
      log('info', 'reload', `${path ?? ''}: ${msg}`);
      return msg;
    } catch (e) {
      log('error', 'reload', `refused, running config kept: ${operatorMessage(e)}`);
      throw e;
    }
  };
  const onHup = (): void => void reloadLogged().catch(() => undefined);
  // SIGINT and SIGTERM are ours before start() touches anything: Node's default would end
  // the process there and then, with the program left on the interface. A signal while
  // starting lets start() finish (or undo itself), then everything is stopped again.
  let stopBy: NodeJS.Signals | undefined;
  let stopRequested!: () => void;
  const stopping = new Promise<void>((res) => (stopRequested = res));
  const onStop = (sig: NodeJS.Signals): void => {
    stopBy ??= sig;
    stopRequested();
  };
  process.on('SIGHUP', onHup);
  process.on('SIGINT', onStop);
  process.on('SIGTERM', onStop);
  let control: { close(): Promise<void> } | undefined;
  let interrupted = false;
  try {
    await svc.start();
    if (stopBy === undefined) control = await serveControl(cfg.iface, {
      reload: async () => ({ message: await reloadLogged() }),
      stats: async () => ({ ...(await svc.stats()), upstreams: (await svc.control({ op: 'upstreams' })).upstreams }),
      upstreams: () => svc.control({ op: 'upstreams' }),
      cache: async (req) => {
        if (req.op === 'flushAll') return svc.control({ op: 'flushAll' });
        if ((req.op !== 'lookup' && req.op !== 'flush') || typeof req.name !== 'string') throw new Error('cache: lookup or flush a name');
        let name: string;
        try {
          name = req.name;
          textToWire(name.endsWith('.') ? name : `${name}.`);
        } catch {
          throw new Error(`'${req.name}' is not a domain name`);
        }
        const qtype = typeof req.type === 'string' ? parseQtype(req.type) : undefined;
        const r = await svc.control({ op: req.op, name, qtype });
        if (req.op === 'flush') log('info', 'cache', `flushed ${name}${req.type ? ` ${String(req.type)}` : ''}: ${String(r.removed)} cache entries, ${String(r.hotRemoved)} hot`);
        return r;
      },
    }).catch((e: unknown) => {
      log('warn', 'control', `no control socket (${(e as Error).message}); reload with SIGHUP`);
      return undefined;
    });
    if (stopBy === undefined) {
      started = true;
      announce('start', `heimdall-xdp serving ${svc.summary}; SIGINT or SIGTERM detaches${path ? ', SIGHUP reloads ' + path : ''}`, { pid: process.pid });
      await stopping;
    } else {
      interrupted = true;
    }
    await control?.close();
    await svc.stop();
  } finally {
    process.off('SIGHUP', onHup);
    process.off('SIGINT', onStop);
    process.off('SIGTERM', onStop);
  }
  if (interrupted) {
    announce('detach', `${stopBy} while starting: stopped, nothing left on ${cfg.iface}`);
    // Ends as the signal would have ended it (status 128 + the signal's number to a shell;
    // a clean stop to systemd), now that nothing is left behind.
    process.kill(process.pid, stopBy);
    return;
  }
  announce('detach', `detached from ${cfg.iface}`);
}

export function buildProgram(): Command {
  const program = new Command('heimdall-xdp')
    .description('Caching DNS forwarder whose hottest answers are served by XDP from a BPF map')
    .version(packageVersion(), '-V, --version', 'print the version')
    // Commander's own errors (a bad flag value, an unknown option, a missing argument)
    // are thrown, not printed: main() says them in the one line every other mistake gets.
    // Set before the commands are added: they inherit it.
    .exitOverride()
    .configureOutput({ outputError: () => undefined });

  const flag = (name: IntSetting, short?: string): [string, string, (v: string) => number] => {
    const s = SETTINGS[name];
    return [`${short ? `${short}, ` : ''}${s.flag} <n>`, s.help, int(name)];
  };
  program
    .command('attach')
    .description('attach to an interface and serve DNS until SIGINT or SIGTERM, then detach')
    .argument('[iface]', "network interface to serve on (or 'interface:' in the config file)")
    .option('-c, --config <file>', 'read settings from a YAML file (config/heimdall-xdp.example.yaml); flags override it')
    .option('-u, --upstream <list>', "upstream resolvers, comma separated: addr[:port], [v6addr]:port (or 'upstreams:' in the config file)")
    .option(...flag('port', '-p'), SETTINGS.port.default)
    .option('-m, --mode <mode>', 'XDP mode: auto, native or generic', 'auto')
    .option('--xdp-attach <how>', "auto (libxdp's dispatcher where it can, else alone), dispatcher (share the interface with other XDP programs) or direct", 'auto')
    .option(...flag('queues', '-q'))
    .option(...flag('cacheSize'), SETTINGS.cacheSize.default)
    .option(...flag('hotSize'))
    .option(...flag('promoteAfter'), SETTINGS.promoteAfter.default)
    .option(...flag('udpSize'), SETTINGS.udpSize.default)
    .option(...flag('tcpMaxConnections'), SETTINGS.tcpMaxConnections.default)
    .option(...flag('tcpMaxPerClient'), SETTINGS.tcpMaxPerClient.default)
    .option(...flag('tcpIdleTimeout'), SETTINGS.tcpIdleTimeout.default)
    .option(...flag('cacheBytes'))
    .option(...flag('cacheMinTtl'), SETTINGS.cacheMinTtl.default)
    .option(...flag('cacheMaxTtl'), SETTINGS.cacheMaxTtl.default)
    .option(...flag('cacheMaxNegativeTtl'), SETTINGS.cacheMaxNegativeTtl.default)
    .option(...flag('upstreamInflight'), SETTINGS.upstreamInflight.default)
    .option(...flag('upstreamInflightTotal'), SETTINGS.upstreamInflightTotal.default)
    .option(...flag('upstreamClientShare'), SETTINGS.upstreamClientShare.default)
    .option(...flag('upstreamTcpConns'), SETTINGS.upstreamTcpConns.default)
    .option(...flag('upstreamTcpPipeline'), SETTINGS.upstreamTcpPipeline.default)
    .option(...flag('upstreamPortReuse'), SETTINGS.upstreamPortReuse.default)
    .option('--no-prefetch', 'let hot names expire instead of refreshing them from upstream in the last 10% of their TTL while XDP serves them')
    .option('--no-xdp-answers', 'XDP answers nothing and redirects every query to the workers, and no name is promoted (measures the userspace path)')
    .option('--no-af-xdp', 'no AF_XDP workers: queries reach userspace through the kernel stack')
    .option('--no-caps-for-id', 'ask the upstreams in the name\'s own case (default: random case, 0x20, answers must echo it)')
    .option('--no-upstream-cookies', 'send no DNS cookies to the upstreams (default: send them and check the server cookie)')
    .option('--no-minimal-responses', 'relay the authority and additional records of answers (default: answer section, and the SOA and denial proofs of negative answers)')
    .option('--serve-stale', 'answer from expired entries when no upstream answers (RFC 8767)')
    .option('--log-format <format>', `log lines on stderr: ${LOG_FORMATS.join(' or ')} (default: text)`)
    .option('--cpus <list>', "CPUs the service's threads run on, e.g. 1-3 or 0,2: keep them off the CPUs that take the interface's packets (default: the scheduler's choice)")
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
    .command('check-config')
    .description('check a config file without attaching: says what is wrong (file:line: key: ...) or what it would run')
    .argument('<file>')
    .argument('[iface]', "the interface, when the file has no 'interface:'")
    .action((path: string, iface: string | undefined) => {
      const file = loadConfigFile(path);
      const cli: Partial<ConfigInput> = iface !== undefined ? { iface } : file.input.iface === undefined ? { iface: 'unset' } : {};
      const cfg = configFrom(file, cli);
      const ifaceText = cfg.iface === 'unset' && iface === undefined ? 'interface from the command line' : `interface ${cfg.iface}`;
      console.log(`${path}: ok (${ifaceText}, upstreams ${cfg.upstreams.map(formatUpstream).join(', ')}, port ${cfg.port}, ${cfg.edge.allow.length} allowed and ${cfg.edge.deny.length} denied prefixes, ${cfg.edge.rrl.rate > 0 ? `rate limit ${cfg.edge.rrl.rate}/s` : 'no rate limit'})`);
    });

  program
    .command('reload')
    .description('make a running attach read its config file again: changes what can change live, says what needs a restart')
    .argument('<iface>')
    .action(async (iface: string) => {
      const r = await controlRequest(iface, { cmd: 'reload' });
      console.log(`reloaded ${iface}: ${String(r.message)}`);
    });

  program
    .command('stats')
    .description('what a running attach is doing: queries/s and answers by path, hit ratio, hot map, upstream, drops by reason')
    .argument('<iface>')
    .option('--json', 'everything as one JSON object (every metric, and per-second rates)')
    .option('--interval <ms>', 'rates over this many milliseconds', '1000')
    .action(statsCommand);

  program
    .command('cache')
    .description('look a name up in the cache and the XDP hot map, or flush it (or everything) from both')
    .argument('<iface>')
    .argument('<action>', 'lookup or flush')
    .argument('[name]')
    .argument('[type]', 'A, AAAA, MX, ... (default: every type)')
    .option('--all', 'flush: every entry of the cache and the hot map')
    .option('--json', 'the reply as JSON')
    .action(cacheCommand);

  program
    .command('upstreams')
    .description("each upstream: up or down, smoothed RTT, p50/p99 RTT, queries, answers, timeouts (every engine together)")
    .argument('<iface>')
    .option('--json', 'the reply as JSON')
    .action(upstreamsCommand);

  program
    .command('detach')
    .description('remove a heimdall XDP program left on an interface, also from a libxdp dispatcher (never a foreign one)')
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
      if (s.dispatcher) {
        const progs = s.dispatcher.programs.map((p, i) => `${i + 1}. XDP program '${p.name}' (id ${p.id}, priority ${p.priority})`);
        console.log(`${iface}: libxdp dispatcher (id ${s.dispatcher.id}, ${s.mode} mode${by}) running ${progs.join(', ') || 'no program'}`);
      } else {
        console.log(s.progId ? `${iface}: XDP program '${s.name}' (id ${s.progId}, ${s.mode} mode${by})` : `${iface}: no XDP program`);
      }
    });
  return program;
}

/** One line for a commander error: its message without "error: ", and where usage is. */
export function commanderLine(e: CommanderError): string {
  const what = e.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim();
  return `${what} (run with --help for usage)`;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here too, having printed what was asked.
      if (e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version') process.exit(e.exitCode);
      // Commander printed the help itself (no command given): nothing to add.
      if (e.code === 'commander.help') process.exit(e.exitCode);
      process.stderr.write(`heimdall-xdp: ${commanderLine(e)}\n`);
      process.exit(e.exitCode || 1);
    }
    process.stderr.write(`heimdall-xdp: ${operatorMessage(e)}\n`);
    process.exit(1);
  }
}
