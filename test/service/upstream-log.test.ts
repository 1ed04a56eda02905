/** The log's upstream events: one line per change of the whole, however many engines report it. */
import { expect, it } from 'vitest';
import { UpstreamLog } from '../../src/service/upstream-log.js';

it('logs an upstream down once when engines report it, and up again when none holds it down', () => {
  const lines: string[] = [];
  const l = new UpstreamLog(() => 3, (level, event, msg) => void lines.push(`${level} ${event}: ${msg}`));
  l.update(0, ['198.18.1.9:53']); // before the service serves: not written (its start fails or says so)
  l.update(0, []);
  expect(lines).toEqual([]);
  l.start();
  l.update(1, ['198.18.1.2:53']);
  l.update(2, ['198.18.1.2:53']);
  l.update(0, ['198.18.1.2:53', '[fd00::2]:53']);
  expect(lines).toEqual(['warn upstream: 198.18.1.2:53 down (in 1 of 3 engines)', 'warn upstream: [fd00::2]:53 down (in 1 of 3 engines)']);
  l.update(1, []);
  l.update(0, []);
  expect(lines).toHaveLength(3);
  expect(lines[2]).toBe('info upstream: [fd00::2]:53 up again');
  l.update(2, []);
  expect(lines[3]).toBe('info upstream: 198.18.1.2:53 up again');
  expect(lines).toHaveLength(4);
});

it('carries the upstream as its own field (the label /metrics uses), for the JSON log format', () => {
  const fields: unknown[] = [];
  const l = new UpstreamLog(() => 2, (_level, _event, _msg, f) => void fields.push(f));
  l.start();
  l.update(1, ['[fd00::2]:53']);
  l.update(1, []);
  expect(fields).toEqual([{ upstream: '[fd00::2]:53' }, { upstream: '[fd00::2]:53' }]);
});
