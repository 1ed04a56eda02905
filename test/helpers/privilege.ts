/**
 * Privileged suites (BPF load, test-run, namespaces) need root and a built project.
 * Outside those they skip and say why; under CI=true a missing capability fails the
 * run instead, because CI exists to run exactly these tests.
 */
import { describe, it } from 'vitest';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { ADDON_PATH, BPF_OBJECT_PATH } from '../../src/native/addon.js';

function probe(needs: { netns?: boolean; tools?: string[] }): string | null {
  if (process.getuid?.() !== 0) return 'not root (BPF and netns need CAP_BPF/CAP_NET_ADMIN)';
  if (!existsSync(ADDON_PATH)) return `addon not built (${ADDON_PATH}): run npm run build`;
  if (!existsSync(BPF_OBJECT_PATH)) return `BPF object not built (${BPF_OBJECT_PATH}): run npm run build`;
  if (needs.netns) {
    try {
      execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    } catch {
      return 'iproute2 with netns support missing: run scripts/setup.sh';
    }
  }
  for (const t of needs.tools ?? []) {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
    } catch {
      return `${t} missing: run scripts/setup.sh`;
    }
  }
  return null;
}

/** describe() for a suite that needs root; skips with the reason, fails under CI=true. */
export function describePrivileged(name: string, needs: { netns?: boolean; tools?: string[] }, body: () => void): void {
  const why = probe(needs);
  if (!why) {
    describe(name, body);
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      it('has the privileges and tools it needs', () => {
        throw new Error(`privileged suite cannot run under CI: ${why}`);
      });
    });
  } else {
    describe.skip(`${name} [skipped: ${why}]`, body);
  }
}
