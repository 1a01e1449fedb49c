import fc from 'fast-check';

/** Cases per parser property in the normal test run. */
const defaultRuns = 2000;

/**
 * fast-check's parameters for one property: FUZZ_RUNS cases per parser property (default 2000)
 * times `share` (requests over HTTP cost more than calls), so a long run (FUZZ_RUNS=100000)
 * explores more of both. FUZZ_SEED replays a failure fast-check reported.
 */
export function fuzzParameters<T>(share = 1): fc.Parameters<T> {
  const raw = process.env.FUZZ_RUNS;
  const runs = raw ? Number(raw) : defaultRuns;
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`FUZZ_RUNS: "${raw}" is not a positive whole number`);
  const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
  return { numRuns: Math.max(1, Math.round(runs * share)), ...(seed === undefined ? {} : { seed }) };
}
