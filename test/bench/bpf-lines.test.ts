/**
 * bench:cpu-split's split of an XDP program by source line (SPLIT_LINES=1): bpf-lines.c
 * against a program loaded here, and bpf-lines.py's charging of samples to lines.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FastPath } from '../../src/xdp/fastpath.js';
import { describePrivileged } from '../helpers/privilege.js';

const dir = mkdtempSync(join(tmpdir(), 'hx-bpf-lines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bpf-lines.py', () => {
  it('charges each sample in a function to the line that starts at or before it, and leaves other samples out of the lines but in the total', () => {
    const lines = join(dir, 'lines.txt');
    const samples = join(dir, 'samples.txt');
    writeFileSync(
      lines,
      [
        'func ffffffffc0001000 64 serve',
        'func ffffffffc0002000 32 heimdall_xdp',
        'line ffffffffc0001000 a.c:10 int serve(void)',
        'line ffffffffc0001010 a.c:12 if (sk[0] != kw[0])',
        'line ffffffffc0001030 h.h:14 (*hits)++;',
        'line ffffffffc0002000 a.c:40 int heimdall_xdp(struct xdp_md *ctx)',
      ].join('\n') + '\n',
    );
    // 10 samples: 4 on line 12 (two inside it, past its start), 2 on line 14, 1 on
    // heimdall_xdp's first line, 1 past serve's end (not the program's), 2 elsewhere.
    writeFileSync(
      samples,
      [
        ' ffffffffc0001010 bpf_prog_x_serve',
        ' ffffffffc0001011 bpf_prog_x_serve',
        ' ffffffffc000102f bpf_prog_x_serve',
        ' ffffffffc0001020 bpf_prog_x_serve',
        ' ffffffffc0001030 bpf_prog_x_serve',
        ' ffffffffc000103f bpf_prog_x_serve',
        ' ffffffffc0002004 bpf_prog_x_heimdall_xdp',
        ' ffffffffc0001040 somewhere',
        ' ffffffff81000000 page_frag_free',
        ' ffffffff81000010 veth_poll',
        'not a sample',
      ].join('\n') + '\n',
    );
    // 100k replies/s: a tenth of the samples is 1e9 / 1e5 / 10 = 1,000 ns a reply.
    const out = execFileSync('python3', ['scripts/bench/bpf-lines.py', lines, samples, '100000', '5'], { encoding: 'utf8' }).trimEnd().split('\n');
    expect(out).toHaveLength(3);
    expect(out[0]).toMatch(/^ +4000\.0 ns 40\.00 % +serve a\.c:12 +if \(sk\[0\] != kw\[0\]\)$/);
    expect(out[1]).toMatch(/^ +2000\.0 ns 20\.00 % +serve h\.h:14 +\(\*hits\)\+\+;$/);
    expect(out[2]).toMatch(/^ +1000\.0 ns 10\.00 % +heimdall_xdp a\.c:40 /);
  });
});

describePrivileged('bpf-lines (the JIT image of a loaded program, by source line)', { tools: ['cc'] }, () => {
  let fp: FastPath;
  const bin = join(dir, 'bpf-lines');

  beforeAll(() => {
    execFileSync('cc', ['-O1', '-o', bin, 'scripts/bench/bpf-lines.c', '-lbpf']);
    fp = FastPath.open({ hotEntries: 64, udpSize: 1232 });
  });
  afterAll(() => fp?.close());

  it("lists the program's functions and where each source line starts inside them, with its file", () => {
    const out = execFileSync(bin, [String(fp.describe().progId)], { encoding: 'utf8' }).trim().split('\n');
    const funcs = out.filter((l) => l.startsWith('func ')).map((l) => l.split(' '));
    expect(funcs.map((f) => f[3])).toEqual(expect.arrayContaining(['heimdall_xdp', 'serve']));
    const lines = out.filter((l) => l.startsWith('line ')).map((l) => l.split(' '));
    expect(lines.length).toBeGreaterThan(100);
    // Every line starts inside one of the functions, and the source text is the program's.
    const inside = (a: bigint): boolean => funcs.some((f) => a >= BigInt(`0x${f[1]}`) && a < BigInt(`0x${f[1]}`) + BigInt(f[2]!));
    expect(lines.every((l) => inside(BigInt(`0x${l[1]}`)))).toBe(true);
    expect(lines.some((l) => /^heimdall\.bpf\.c:\d+$/.test(l[2]!) && l.slice(3).join(' ') === 'if (sk[0] != kw[0] || sk[1] != kw[1])')).toBe(true);
    // Code inlined from the header (rrl_index) is named by its own file.
    expect(lines.some((l) => /^heimdall\.h:\d+$/.test(l[2]!))).toBe(true);
  });

  it('says what is wrong, in one line, for a program that does not exist', () => {
    let err = '';
    try {
      execFileSync(bin, ['4294967295'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      err = String((e as { stderr: string }).stderr).trim();
    }
    expect(err).toMatch(/^bpf-lines: program 4294967295: /);
    expect(err.split('\n')).toHaveLength(1);
  });
});
