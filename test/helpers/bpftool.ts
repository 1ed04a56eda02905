/**
 * The kernel's view of a loaded program's maps, through bpftool as an operator would look:
 * the tests that check what is really in a map, behind the addon.
 */
import { execFileSync } from 'node:child_process';

/** The maps a loaded program uses, by name: name -> map id. */
export function progMapIds(progId: number | string): Map<string, number> {
  const prog = JSON.parse(execFileSync('bpftool', ['prog', 'show', 'id', String(progId), '--json'], { encoding: 'utf8' })) as { map_ids: number[] };
  const ids = new Map<string, number>();
  for (const id of prog.map_ids) {
    const { name } = JSON.parse(execFileSync('bpftool', ['map', 'show', 'id', String(id), '--json'], { encoding: 'utf8' })) as { name: string };
    ids.set(name, id);
  }
  return ids;
}
