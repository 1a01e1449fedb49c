import { describe, expect, it } from 'vitest';
import { planSegments } from '../server/infra/store/s3Concatenation.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const through = (segments: ReturnType<typeof planSegments>) =>
  segments.filter((s) => s.kind === 'through').flatMap((s) => (s.kind === 'through' ? s.pieces : [])).reduce((sum, p) => sum + p.end - p.start, 0);

/** How a final object's parts are made from its partials: copied inside S3, or sent through the server. */
describe('planSegments', () => {
  it('copies every partial of 5 MiB or more, and a small last one, inside S3', () => {
    const segments = planSegments([6, 6, 6, 2].map((n, i) => ({ key: `p${i}`, size: n * MiB })));
    expect(segments.map((s) => s.kind)).toEqual(['copy', 'copy', 'copy', 'copy']);
    expect(through(segments)).toBe(0);
  });

  it('gathers small partials into parts of at least 5 MiB sent through the server; every part but the last is 5 MiB or more', () => {
    const segments = planSegments([3, 3, 3, 3].map((n, i) => ({ key: `p${i}`, size: n * MiB })));
    expect(segments.map((s) => s.kind)).toEqual(['through', 'through', 'copy']);
    const sizes = segments.map((s) => (s.kind === 'copy' ? s.piece.end - s.piece.start : s.pieces.reduce((sum, p) => sum + p.end - p.start, 0)));
    expect(sizes).toEqual([5 * MiB, 5 * MiB, 2 * MiB]);
    expect(sizes.slice(0, -1).every((size) => size >= 5 * MiB)).toBe(true);
  });

  it('takes only what completes a gathering from a large partial after it, and copies the rest', () => {
    const segments = planSegments([{ key: 'small', size: 1 * MiB }, { key: 'large', size: 20 * MiB }]);
    expect(segments).toEqual([
      { kind: 'through', pieces: [{ key: 'small', start: 0, end: MiB }, { key: 'large', start: 0, end: 4 * MiB }] },
      { kind: 'copy', piece: { key: 'large', start: 4 * MiB, end: 20 * MiB } },
    ]);
  });

  it('copies a partial over 5 GiB in pieces of at most 5 GiB, each leaving at least 5 MiB', () => {
    const segments = planSegments([{ key: 'huge', size: 5 * GiB + MiB }]);
    expect(segments).toEqual([
      { kind: 'copy', piece: { key: 'huge', start: 0, end: 5 * GiB - 4 * MiB } },
      { kind: 'copy', piece: { key: 'huge', start: 5 * GiB - 4 * MiB, end: 5 * GiB + MiB } },
    ]);
  });
});
