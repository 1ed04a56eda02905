/** `npm run demo` as a new user sees it: every ask labelled with the path that answered it. */
import { expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describePrivileged } from '../helpers/privilege.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describePrivileged('the demo', { netns: true, tools: ['dig', 'kdig', 'nsd', 'curl'] }, () => {
  it('labels each of its five asks with the path that answered, ending in XDP, and detaches', () => {
    const out = execFileSync('bash', ['scripts/demo.sh'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, HX_LAB: `dm${process.pid % 1000}` }, timeout: 120_000 });
    const asks = [...out.matchAll(/ask (\d): .* <- (.*)\n/g)].map((m) => m[2]!);
    expect(asks, out).toHaveLength(5);
    for (const p of asks) expect(p).toMatch(/^(XDP \(kernel, from the BPF hot map\)|userspace cache \(AF_XDP worker\)|upstream \(NSD\), then cached)$/);
    expect(asks[0]).toMatch(/^upstream/);
    expect(asks[4]).toMatch(/^XDP/);
    expect(out).toMatch(/www\.lab\.example A: cached \(1 entry\); hot in XDP: A/);
    expect(out).toMatch(/hot map: [1-9]\d* of \d+ entries/);
    expect(out).toMatch(/: no XDP program\n/);
  }, 120_000);
});
