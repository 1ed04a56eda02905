/** The Grafana dashboard in the repo is what scripts/dashboard.ts writes (the lab test checks its metrics). */
import { expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

it('dashboards/heimdall-xdp.json is up to date with scripts/dashboard.ts', () => {
  const out = join(mkdtempSync(join(tmpdir(), 'hx-dash-')), 'd.json');
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/dashboard.ts', out], { cwd: ROOT });
  expect(readFileSync(join(ROOT, 'dashboards/heimdall-xdp.json'), 'utf8')).toBe(readFileSync(out, 'utf8'));
  const d = JSON.parse(readFileSync(out, 'utf8')) as { panels: { title: string }[] };
  expect(d.panels.map((p) => p.title)).toEqual(expect.arrayContaining(['Answers/s by path', 'Hit ratio', 'Hot map entries', 'Upstream latency', 'Upstream health', 'Drops by reason', 'Rate-limited and refused', 'Worker restarts', 'Upstream RTT by upstream', 'Upstream up by upstream', 'Upstream queries by upstream']));
});
