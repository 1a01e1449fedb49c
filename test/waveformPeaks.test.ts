import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WaveformPeaks } from '../processors/waveformPeaks.ts';

function f32le(samples: number[]): Buffer {
  const bytes = Buffer.alloc(samples.length * 4);
  samples.forEach((sample, i) => bytes.writeFloatLE(sample, i * 4));
  return bytes;
}

/** Feeds `bytes` cut at `cuts` (byte offsets, a sample may span two chunks). */
function peaksOf(points: number, bytes: Buffer, cuts: number[]): { pairs: Array<[number, number]>; peaks: WaveformPeaks } {
  const peaks = new WaveformPeaks(points);
  let from = 0;
  for (const cut of [...cuts.filter((c) => c < bytes.length)].sort((a, b) => a - b)) {
    peaks.push(bytes.subarray(from, cut));
    from = cut;
  }
  peaks.push(bytes.subarray(from));
  return { pairs: peaks.finish(), peaks };
}

describe('WaveformPeaks', () => {
  it('gives min(points, samples) pairs that keep every extreme, however the bytes are cut', () => {
    const sample = fc.float({ min: -1, max: 1, noNaN: true, noDefaultInfinity: true }).map(Math.fround);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.array(sample, { maxLength: 2000 }), fc.array(fc.nat(8000), { maxLength: 5 }), (points, samples, cuts) => {
        const { pairs, peaks } = peaksOf(points, f32le(samples), cuts);
        expect(peaks.samples).toBe(samples.length);
        expect(pairs).toHaveLength(Math.min(points, samples.length));
        for (const [min, max] of pairs) expect(min).toBeLessThanOrEqual(max);
        if (samples.length > 0) {
          expect(Math.min(...pairs.map(([min]) => min))).toBe(Math.min(...samples));
          expect(Math.max(...pairs.map(([, max]) => max))).toBe(Math.max(...samples));
        }
      }),
    );
  });

  it('places each extreme where it is in time, whatever the length', () => {
    // One spike at 3/4 of a long silence: it lands in the pair at 3/4 of the waveform.
    const length = 100_003;
    const samples = new Array<number>(length).fill(0);
    samples[Math.floor(length * 0.75)] = 1;
    const { pairs } = peaksOf(100, f32le(samples), []);
    expect(pairs.findIndex(([, max]) => max === 1)).toBeGreaterThanOrEqual(74);
    expect(pairs.findIndex(([, max]) => max === 1)).toBeLessThanOrEqual(75);
  });
});
