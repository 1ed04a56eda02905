/**
 * Self time of a V8 CPU profile by miss-path stage: each sample's leaf, and what it was
 * called for (walking up the stack). Used by scripts/bench/miss-path.ts; on its own it
 * summarises a .cpuprofile written by node --cpu-prof:
 *   npx tsx scripts/bench/miss/attribute.ts file.cpuprofile
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export type Profile = { nodes: { id: number; callFrame: { functionName: string; url: string }; children?: number[] }[]; samples: number[]; timeDeltas: number[] };

/** Self time by stage: each sample's leaf function, and what it was called for (walking up the stack). */
export function attribute(p: Profile): Map<string, number> {
  const parent = new Map<number, number>();
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stageOf = (id: number): string => {
    const leaf = byId.get(id)!.callFrame;
    if (leaf.functionName === '(idle)') return 'idle (waiting for the kernel)';
    if (leaf.functionName === '(garbage collector)') return 'GC';
    if (leaf.functionName === '(program)') return 'native / libuv (unattributed)';
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      const fn = f.functionName;
      const file = path.basename(f.url);
      if (file === 'scrub.ts') return 'scrub';
      if (fn === 'matchResponse' || file === 'view.ts') return 'answer check (matchResponse)';
      if (fn === 'buildQuery' || file === 'guard.ts') return 'query build (0x20, cookie)';
      if (fn === 'createSocket' || (file.endsWith('dgram') && fn === 'Socket')) return 'socket create';
      if (fn === 'bind' || fn === 'bindAndSend' || fn === 'startListening' || fn === 'lookup4' || fn === 'newSocket') return 'socket bind';
      if (fn === 'close' && (file.endsWith('dgram') || f.url === '')) return 'socket close';
      if (fn === 'send' || fn === 'doSend' || fn === 'afterDns' || fn === 'sliceBuffer') return 'send';
      if (fn === 'onMessage' && file.endsWith('dgram')) return 'receive (dgram onMessage)';
      if (fn === 'setTimeout' || fn === 'clearTimeout' || fn === 'listOnTimeout' || fn === 'processTimers' || fn === 'insert' || fn === 'unenroll') return 'timers';
      if (fn === 'processTicksAndRejections' || fn === 'runMicrotasks') {
        // keep walking: what the microtask ran is more telling
      }
      if (fn === 'questionKey') return 'coalescing key';
    }
    return `other: ${leaf.functionName || '(anonymous)'} ${path.basename(leaf.url)}`;
  };
  const out = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const k = stageOf(p.samples[i]!);
    out.set(k, (out.get(k) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  return out;
}

if (process.argv[1]?.endsWith('attribute.ts') && process.argv[2]) {
  const m = attribute(JSON.parse(readFileSync(process.argv[2], 'utf8')) as Profile);
  const tot = [...m.values()].reduce((a, b) => a + b, 0);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`${((v / tot) * 100).toFixed(1).padStart(6)}%  ${k}`);
}
