/**
 * The parsers of npm run bench:tails, held to the formats they read. The perf sched line
 * of a process's main thread (task[tid], no /pid) was once skipped: the main thread's
 * waits for a CPU went uncounted.
 */
import { describe, expect, it } from 'vitest';
import { latenciesOf, schedOf, threadsOf, type Profile } from '../../scripts/bench/tails-parse.js';

describe('bench:tails parsers', () => {
  it('reads perf sched timehist lines of the server, its main thread included, placing each wait before its run', () => {
    const t0Us = 1000 * 1e6; // windows of 100 ms from t = 1000 s
    const text = [
      '           time    cpu  task name                       wait time  sch delay   run time',
      '                        [tid/pid]                          (msec)     (msec)     (msec)',
      '--------------- ------  ------------------------------  ---------  ---------  ---------',
      '    1000.050000 [0001]  node[101/100]                       1.000      0.300      0.010',
      '    1000.150000 [0000]  node[100]                           2.000      4.500      0.020', // the main thread
      '    1000.160000 [0000]  dnsperf[200/200]                    0.000      9.000      0.010', // another process
      '    1000.305000 [0001]  node[102/100]                       0.500      1.200     10.000', // ran 10 ms: waited at 1000.295
      '    1000.250000 [0001]  kworker/u8:2-ev[55]                 0.000      7.000      0.010',
    ].join('\n');
    const max = schedOf(text, 100, t0Us, 100_000, 4);
    expect([...max]).toEqual([0.3, 4.5, 1.2, 0]);
  });

  it('places dnsperf latencies by its own run time, leaves out the warm-up, and puts a lost query where it was sent', () => {
    // 10 lines over 1 s: 0.1 s a line; the first 0.2 s left out; windows of 200 ms.
    const lines = ['Statistics:'];
    for (let i = 0; i < 10; i++) lines.push(i === 7 ? `> T h${i}.lab.example A` : `> NOERROR h${i}.lab.example A 0.00${i}000`);
    lines.push('  Run time (s):         1.000000');
    const { lat, lost, achieved } = latenciesOf(lines.join('\n'), 0.2, 0.5, 200, 4);
    expect(achieved).toBe(10);
    // line i at i × 0.1 s − 0.2 s: lines 2-3 in window 0, 4-5 in 1, 6 in 2 (8-9 would be 3).
    expect(lat[0]).toEqual([2000, 3000]);
    expect(lat[1]).toEqual([4000, 5000]);
    expect(lat[2]).toEqual([6000]);
    expect(lat[3]).toEqual([8000, 9000]);
    // line 7 (lost) printed at 0.7 s, sent 0.5 s earlier: 0.0 s after the warm-up, window 0.
    expect(lost).toEqual([1, 0, 0, 0]);
  });

  it('charges each profile sample until the next one to what its stack was doing', () => {
    const frame = (id: number, functionName: string, url = '', children?: number[]) => ({ id, callFrame: { functionName, url }, children });
    const p: Profile = {
      nodes: [
        frame(1, '(root)', '', [2, 3, 4, 6]),
        frame(2, '(garbage collector)'),
        frame(3, '(idle)'),
        frame(4, 'run', 'file:///x/dist/engine/upkeep.js', [5]),
        frame(5, 'sweep', 'file:///x/dist/engine/shared-cache.js'),
        frame(6, 'drain', 'file:///x/dist/io/xsk-server.js', [7]),
        frame(7, 'addHashed', 'file:///x/dist/hot/asks.js'),
      ],
      startTime: 0,
      // samples at 0, 1, 3, 6, 10 ms: each stands for the time until the next
      samples: [2, 5, 3, 7, 6],
      timeDeltas: [0, 1000, 2000, 3000, 4000],
    };
    const [t] = threadsOf([{ name: 'worker 1', p }], 0, 5000, 3);
    expect(t!.name).toBe('worker 1');
    const ms = (k: string) => [...t!.ms.get(k as never)!];
    expect(ms('gc')).toEqual([1, 0, 0]);
    expect(ms('upkeep')).toEqual([2, 0, 0]);
    expect(ms('idle')).toEqual([3, 0, 0]);
    expect(ms('hot')).toEqual([0, 4, 0]); // ask counting under the drain loop
    expect(ms('work')).toEqual([0, 0, 0]); // the last sample has no next one
  });
});
