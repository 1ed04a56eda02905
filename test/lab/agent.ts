/**
 * Lab agent: runs inside the appliance namespace (ip netns exec ... node --import tsx),
 * holds the loaded XDP program and obeys JSON-line commands from the test.
 *   {cmd:'attach', ifname, mode, how?}  -> {ok, mode, dispatcher, directReason}
 *   {cmd:'put', response: base64, do?}  -> {ok, slot}  (an upstream response to cache)
 *   {cmd:'stats'}                       -> {stats: {name: string}}
 *   {cmd:'hits', slot}                  -> {hits: string}
 *   {cmd:'detach'}                      -> {ok, removed}
 */
import { createInterface } from 'node:readline';
import { FastPath } from '../../src/xdp/fastpath.js';
import { interfaceAddresses } from '../../src/edge/local.js';
import { serveLab } from '../helpers/edge.js';
import { answerFromResponse } from '../../src/dns/answer.js';

const fp = FastPath.open({ hotEntries: 64 });

function handle(m: Record<string, unknown>): unknown {
  switch (m.cmd) {
    case 'attach': {
      serveLab(fp, interfaceAddresses(String(m.ifname)).map((s) => s.text));
      const r = fp.attach(String(m.ifname), (m.mode as 'native' | 'generic' | 'auto') ?? 'auto', false, (m.how as 'auto' | 'dispatcher' | 'direct') ?? 'direct');
      return { ok: true, mode: r.mode, dispatcher: r.dispatcher, directReason: r.directReason };
    }
    case 'put': {
      const msg = Buffer.from(String(m.response), 'base64');
      const a = answerFromResponse(msg, fp.nowNs(), undefined, Boolean(m.do));
      return { ok: true, slot: fp.put(a) };
    }
    case 'stats':
      return { stats: Object.fromEntries(Object.entries(fp.stats()).map(([k, v]) => [k, v.toString()])) };
    case 'hits':
      return { hits: fp.hits(Number(m.slot)).toString() };
    case 'detach':
      return { ok: true, removed: fp.detach() };
    default:
      return { error: `unknown command ${String(m.cmd)}` };
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  let out: unknown;
  try {
    out = handle(JSON.parse(line) as Record<string, unknown>);
  } catch (e) {
    out = { error: (e as Error).message };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
});
process.stdin.on('end', () => {
  fp.detach();
  fp.close();
  process.exit(0);
});
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    fp.detach();
    process.exit(0);
  });
}
