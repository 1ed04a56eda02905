/**
 * The open-ended random campaign over the hostile-input properties
 * (test/helpers/hostile.ts), apart from `npm test`, whose fuzz runs fixed seeds.
 *
 *   npm run fuzz                       # 60 s, a fresh seed
 *   npm run fuzz -- --seconds 600      # longer
 *   npm run fuzz -- --seed 12345       # replay a campaign
 *
 * It prints its seed first. Each round runs every property with the next seed of the
 * campaign. On a failure it prints the property, the round's seed and fast-check's
 * path, and the failing input's hex: add that to REGRESSIONS in test/helpers/hostile.ts
 * (with where it came from), fix the code, and the regression stays in `npm test`.
 * Exit 0 when the time is up with nothing found, 1 on a counterexample.
 */
import fc from 'fast-check';
import { PROPERTIES, exercise, type PropertyName } from '../test/helpers/hostile.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function die(msg: string): never {
  console.error(`fuzz: ${msg}`);
  process.exit(2);
}

const seconds = Number(arg('seconds') ?? 60);
if (!(seconds > 0 && seconds <= 86_400)) die('--seconds must be in 1..86400');
const seedArg = arg('seed');
const seed = seedArg === undefined ? (Date.now() ^ (process.pid << 16)) | 0 : Number(seedArg) | 0;
if (seedArg !== undefined && !Number.isFinite(Number(seedArg))) die('--seed must be an integer');
console.log(`fuzz: seed ${seed}, ${seconds} s (replay with: npm run fuzz -- --seed ${seed} --seconds ${seconds})`);

const out = new Uint8Array(65_535);
const stop = Date.now() + seconds * 1000;
const runs: Record<string, number> = {};
let round = 0;
while (Date.now() < stop) {
  for (const [name, arb] of Object.entries(PROPERTIES) as [PropertyName, fc.Arbitrary<Uint8Array>][]) {
    const roundSeed = (seed + Math.imul(round, 0x9e3779b1)) | 0;
    let last: Uint8Array | undefined;
    const r = fc.check(
      fc.property(arb, (b) => {
        last = b;
        exercise(b, out);
      }),
      { seed: roundSeed, numRuns: 500, endOnFailure: true },
    );
    runs[name] = (runs[name] ?? 0) + r.numRuns;
    if (r.failed) {
      const bytes = (r.counterexample?.[0] as Uint8Array | undefined) ?? last;
      console.log(`fuzz: property "${name}" failed in round ${round}: fast-check seed ${roundSeed}, path "${r.counterexamplePath}"`);
      console.log(`fuzz: ${String(r.errorInstance ?? 'error')}`);
      if (bytes !== undefined) console.log(`fuzz: input hex ${Buffer.from(bytes).toString('hex')}`);
      process.exit(1);
    }
  }
  round++;
}
console.log(`fuzz: nothing found in ${round} rounds (${Object.entries(runs).map(([k, n]) => `${k} ${n}`).join(', ')})`);
