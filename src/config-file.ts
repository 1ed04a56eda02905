/**
 * The config file: YAML, one key for every option of `attach` (the flag's name without
 * its dashes), read into the same ConfigInput the flags produce, so that resolveConfig
 * (src/config.ts) is the one place that checks and completes a configuration. Flags
 * given on the command line override the file's keys.
 *
 * Every mistake names the file, the line and the key:
 *
 *   heimdall.yaml:12: upstreams[1]: "1.2.3.4:99999": port must be 1..65535
 *
 * A value the file's own checks pass but resolveConfig refuses (a bound, a power of two)
 * is reported at the key that holds it too: resolveConfig's errors carry the ConfigInput
 * field they are about (ConfigError.field).
 *
 * FILE_KEYS is the format; configSchema() turns it into the JSON Schema in the repo
 * (config/heimdall-xdp.schema.json), which a test keeps equal to it.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Pair } from 'yaml';
import { ATTACH_MODES, SETTINGS, XDP_ATTACH, parseCpuList, type ConfigInput, type IntSetting } from './config.js';
import { parseAclList } from './edge/acl.js';
import { HeimdallError } from './errors.js';
import { LOG_FORMATS } from './log.js';
import { parseAddr } from './net/addr.js';
import { parseUpstreams } from './upstream/upstream.js';

type Field = Exclude<keyof ConfigInput, 'force'>;

interface KeySpec {
  /** The ConfigInput field the key fills. */
  field: Field;
  kind: 'int' | 'bool' | 'string' | 'list' | 'enum' | 'cpus';
  help: string;
  /** int: the SETTINGS entry with its bounds. */
  setting?: IntSetting;
  /** enum: the allowed values. */
  values?: readonly string[];
  /** list: checks one item; throws with what is wrong. */
  item?: (text: string) => void;
  /** Changes on reload without a restart (src/service/reload.ts RELOAD_KEYS says the same). */
  live: boolean;
}

function intKey(setting: IntSetting, live: boolean): [string, KeySpec] {
  const s = SETTINGS[setting];
  return [s.flag.slice(2), { field: setting, kind: 'int', help: s.help, setting, live }];
}

const upstreamItem = (t: string): void => void parseUpstreams(t);
const prefixItem = (t: string): void => void parseAclList(t);
const addrItem = (t: string): void => {
  if (!parseAddr(t) || t.includes('/')) throw new Error('is not an IPv4 or IPv6 address');
};

/** Every key of the file, in the order the example and the schema list them. */
export const FILE_KEYS: Readonly<Record<string, KeySpec>> = Object.freeze({
  interface: { field: 'iface', kind: 'string', help: 'network interface to serve on (the argument of attach overrides it)', live: false },
  upstreams: { field: 'upstream', kind: 'list', help: 'upstream resolvers: addr[:port] or [v6addr]:port', item: upstreamItem, live: true },
  ...Object.fromEntries([intKey('port', false)]),
  mode: { field: 'mode', kind: 'enum', values: ATTACH_MODES, help: 'XDP mode: auto, native or generic', live: false },
  'xdp-attach': { field: 'xdpAttach', kind: 'enum', values: XDP_ATTACH, help: "through libxdp's dispatcher, sharing the interface with other XDP programs (dispatcher), alone (direct), or the dispatcher where it can (auto)", live: false },
  ...Object.fromEntries([
    intKey('queues', false),
    intKey('cacheSize', true),
    intKey('hotSize', false),
    intKey('promoteAfter', true),
    intKey('udpSize', false),
    intKey('tcpMaxConnections', false),
    intKey('tcpMaxPerClient', false),
    intKey('tcpIdleTimeout', false),
    intKey('cacheBytes', true),
    intKey('cacheMinTtl', true),
    intKey('cacheMaxTtl', true),
    intKey('cacheMaxNegativeTtl', true),
    intKey('upstreamInflight', false),
    intKey('upstreamInflightTotal', false),
    intKey('upstreamClientShare', false),
    intKey('upstreamTcpConns', false),
    intKey('upstreamTcpPipeline', false),
    intKey('upstreamPortReuse', false),
  ]),
  'xdp-answers': { field: 'xdpAnswers', kind: 'bool', help: 'XDP answers hot names itself (false: every query goes to the workers, and no name is promoted meanwhile)', live: true },
  prefetch: { field: 'prefetch', kind: 'bool', help: 'refresh a hot name from upstream in the last 10% of its TTL while XDP still serves it (false: it expires and is fetched again on the next miss)', live: true },
  'af-xdp': { field: 'afXdp', kind: 'bool', help: 'AF_XDP workers (false: queries reach userspace through the kernel stack)', live: false },
  'caps-for-id': { field: 'capsForId', kind: 'bool', help: "ask the upstreams in random case (0x20) and require answers to echo it (false: the name's own case)", live: false },
  'upstream-cookies': { field: 'upstreamCookies', kind: 'bool', help: 'send DNS cookies to the upstreams and check the server cookie', live: false },
  'minimal-responses': { field: 'minimalResponses', kind: 'bool', help: 'answer with the answer section (and the SOA and denial proofs of negative answers) only; false: relay authority and additional records', live: false },
  'serve-stale': { field: 'serveStale', kind: 'bool', help: 'answer from expired entries when no upstream answers (RFC 8767)', live: true },
  cpus: { field: 'cpus', kind: 'cpus', help: "CPUs the service's threads run on (e.g. 1-3 or 0,2): keep them off the CPUs that take the interface's packets, where the XDP program runs (default: wherever the scheduler puts them)", live: true },
  'log-format': { field: 'logFormat', kind: 'enum', values: LOG_FORMATS, help: 'log lines on stderr: text, or json (one object per line)', live: true },
  'metrics-listen': { field: 'metricsListen', kind: 'string', help: 'serve Prometheus metrics at http://addr:port/metrics', live: false },
  listen: { field: 'listen', kind: 'list', help: 'addresses to answer on (default: every address of the interface, followed)', item: addrItem, live: false },
  allow: { field: 'allow', kind: 'list', help: "client prefixes served; 'default' = the private and local ranges, 'any' = everyone", item: prefixItem, live: true },
  deny: { field: 'deny', kind: 'list', help: 'client prefixes dropped without a reply (the longest matching prefix of allow/deny wins)', item: prefixItem, live: true },
  ...Object.fromEntries([
    intKey('rrl', true),
    intKey('rrlSlip', true),
    intKey('rrlWindow', true),
    intKey('rrlAll', true),
    intKey('rrlV4Prefix', true),
    intKey('rrlV6Prefix', true),
    intKey('rrlBuckets', false),
  ]),
  'rrl-exempt': { field: 'rrlExempt', kind: 'list', help: 'client prefixes whose responses are never rate limited', item: prefixItem, live: true },
} satisfies Record<string, KeySpec>);

/** The file key of a ConfigInput field. */
export function keyOfField(field: string): string | undefined {
  return Object.entries(FILE_KEYS).find(([, s]) => s.field === field)?.[0];
}

/** A config file read: its ConfigInput and where each key was. */
export interface LoadedConfig {
  path: string;
  input: Partial<ConfigInput>;
  /** Line of each key present (1-based). */
  lines: ReadonlyMap<string, number>;
}

function fileError(path: string, line: number | undefined, key: string | undefined, message: string): HeimdallError {
  const where = `${basename(path)}${line ? `:${line}` : ''}`;
  return new HeimdallError('E_BAD_CONFIG', `${where}: ${key ? `${key}: ` : ''}${message}`);
}

/** Parses the YAML text of a config file (`path` names it in errors). */
export function parseConfigText(text: string, path: string): LoadedConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const lineOf = (n: Node | Pair | null | undefined): number | undefined => {
    const range = (n as Node | null)?.range;
    return range ? lc.linePos(range[0]).line : undefined;
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = lc.linePos(e.pos[0]).line;
    throw fileError(path, line, undefined, `not valid YAML: ${e.message.split('\n')[0]}`);
  }
  const input: Partial<ConfigInput> = {};
  const lines = new Map<string, number>();
  const root = doc.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) return { path, input, lines };
  if (!isMap(root)) throw fileError(path, lineOf(root), undefined, 'must be a mapping of keys to values (key: value)');
  const out = input as Record<string, unknown>;
  for (const pair of root.items) {
    const keyNode = pair.key as Node;
    const key = isScalar(keyNode) ? String(keyNode.value) : '';
    const line = lineOf(keyNode);
    const spec = FILE_KEYS[key];
    if (!spec) throw fileError(path, line, key, `unknown key (the keys are: ${Object.keys(FILE_KEYS).join(', ')})`);
    lines.set(key, line ?? 0);
    const v = pair.value as Node | null;
    const bad = (what: string, at: Node | null = v): HeimdallError => fileError(path, lineOf(at) ?? line, key, what);
    const scalar = isScalar(v) ? v.value : undefined;
    switch (spec.kind) {
      case 'int': {
        const s = SETTINGS[spec.setting!];
        if (typeof scalar !== 'number' || !Number.isInteger(scalar)) throw bad(`must be an integer from ${s.min} to ${s.max}, got ${show(v)}`);
        if (scalar < s.min || scalar > s.max) throw bad(`must be an integer from ${s.min} to ${s.max}, got ${scalar}`);
        out[spec.field] = scalar;
        break;
      }
      case 'bool':
        if (typeof scalar !== 'boolean') throw bad(`must be true or false, got ${show(v)}`);
        out[spec.field] = scalar;
        break;
      case 'string':
        if (typeof scalar !== 'string' || scalar === '') throw bad(`must be a string, got ${show(v)}`);
        out[spec.field] = scalar;
        break;
      case 'cpus': {
        // `cpus: 1` reads as a number, `cpus: 1-3` and `cpus: 0,2` as strings.
        const text = typeof scalar === 'number' && Number.isInteger(scalar) && scalar >= 0 ? String(scalar) : scalar;
        if (typeof text !== 'string') throw bad(`must be a CPU list such as 1, 2-3 or 0,2, got ${show(v)}`);
        try {
          parseCpuList(text);
        } catch (e) {
          throw bad((e as Error).message);
        }
        out[spec.field] = text;
        break;
      }
      case 'enum':
        if (typeof scalar !== 'string' || !spec.values!.includes(scalar)) throw bad(`must be one of ${spec.values!.join(', ')}, got ${show(v)}`);
        out[spec.field] = scalar;
        break;
      case 'list': {
        // A list, or one string (comma separated, as the flag takes it).
        const items: { text: string; node: Node | null; index: number | null }[] = [];
        if (isSeq(v)) {
          v.items.forEach((it, i) => {
            const n = it as Node;
            const t = isScalar(n) ? n.value : undefined;
            if (typeof t !== 'string' || t.trim() === '') throw fileError(path, lineOf(n) ?? line, `${key}[${i}]`, `must be a string, got ${show(n)}`);
            items.push({ text: t.trim(), node: n, index: i });
          });
        } else if (typeof scalar === 'string') {
          for (const t of scalar.split(',').map((x) => x.trim()).filter((x) => x !== '')) items.push({ text: t, node: v, index: null });
        } else {
          throw bad(`must be a list of strings, got ${show(v)}`);
        }
        if (items.length === 0 && spec.field !== 'deny' && spec.field !== 'rrlExempt') throw bad('must not be empty');
        for (const it of items) {
          try {
            spec.item!(it.text);
          } catch (e) {
            const k = it.index === null ? key : `${key}[${it.index}]`;
            const m = (e as Error).message;
            throw fileError(path, lineOf(it.node) ?? line, k, m.includes(it.text) ? m : `"${it.text}": ${m}`);
          }
        }
        if (spec.field === 'upstream') {
          try {
            parseUpstreams(items.map((i) => i.text).join(','));
          } catch (e) {
            throw bad((e as Error).message);
          }
        }
        out[spec.field] = items.map((i) => i.text).join(',');
        break;
      }
    }
  }
  return { path, input, lines };
}

function show(n: Node | null | undefined): string {
  if (n === null || n === undefined) return 'nothing';
  if (isScalar(n)) return JSON.stringify(n.value);
  if (isSeq(n)) return 'a list';
  if (isMap(n)) return 'a mapping';
  return 'something else';
}

/** Reads and parses a config file; a missing or unreadable file is one clear error. */
export function loadConfigFile(path: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new HeimdallError('E_BAD_CONFIG', `cannot read config file ${path}: ${why}`);
  }
  return parseConfigText(text, path);
}

/**
 * The file's input with the command line's on top (flags override keys). `cli` holds
 * only what was given on the command line.
 */
export function mergeInput(file: LoadedConfig | null, cli: Partial<ConfigInput>): ConfigInput {
  const merged = { ...(file?.input ?? {}), ...cli } as ConfigInput;
  return merged;
}

/**
 * An error of resolveConfig about a value that came from the file, said at its key and
 * line; any other error unchanged.
 */
export function locateError(e: unknown, file: LoadedConfig | null, cli: Partial<ConfigInput>): unknown {
  const field = (e as { field?: string }).field;
  const detail = (e as { detail?: string }).detail;
  if (!file || !field || !detail || field in cli) return e;
  const key = keyOfField(field);
  if (!key || !file.lines.has(key)) return e;
  return fileError(file.path, file.lines.get(key), key, detail);
}

/** The JSON Schema of the file format (config/heimdall-xdp.schema.json is this, written out). */
export function configSchema(): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(FILE_KEYS)) {
    const description = s.help + (s.live ? ' (changes on reload)' : ' (needs a restart to change)');
    switch (s.kind) {
      case 'int': {
        const b = SETTINGS[s.setting!];
        properties[key] = { description, type: 'integer', minimum: b.min, maximum: b.max, ...(b.default !== undefined ? { default: b.default } : {}) };
        break;
      }
      case 'bool':
        properties[key] = { description, type: 'boolean' };
        break;
      case 'string':
        properties[key] = { description, type: 'string', minLength: 1 };
        break;
      case 'cpus':
        properties[key] = { description, oneOf: [{ type: 'integer', minimum: 0 }, { type: 'string', pattern: '^[0-9, -]+$' }] };
        break;
      case 'enum':
        properties[key] = { description, enum: [...s.values!] };
        break;
      case 'list':
        properties[key] = { description, oneOf: [{ type: 'array', items: { type: 'string', minLength: 1 } }, { type: 'string' }] };
        break;
    }
  }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'heimdall-xdp config file',
    description: 'heimdall-xdp attach --config <file>: one key for every option of attach; flags override the file.',
    type: 'object',
    additionalProperties: false,
    properties,
  };
}
