/**
 * Loaded before every test file (vitest.config.ts setupFiles): fast-check properties
 * that do not name a seed run with this one, so `npm test` gives the same inputs every
 * run and fails only on a change of code. The open-ended random campaign is
 * `npm run fuzz` (scripts/fuzz.ts). HEIMDALL_FC_SEED=<n> runs the suite with another.
 */
import fc from 'fast-check';

const seed = Number(process.env.HEIMDALL_FC_SEED ?? 0x13);
if (!Number.isInteger(seed)) throw new Error(`HEIMDALL_FC_SEED must be an integer, got ${process.env.HEIMDALL_FC_SEED}`);
fc.configureGlobal({ ...fc.readConfigureGlobal(), seed });
