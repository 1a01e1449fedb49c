/**
 * A waveform's min/max pairs from a stream of mono 32-bit float samples whose length is not known
 * ahead (a recorded WebM has no duration): blocks of samples double in size whenever there are
 * twice as many as wanted, so memory stays at most 2 × `points` pairs whatever the length.
 */
export class WaveformPeaks {
  readonly points: number;
  private blockSize = 1;
  private readonly mins: number[] = [];
  private readonly maxs: number[] = [];
  private min = Infinity;
  private max = -Infinity;
  private inBlock = 0;
  private carry = Buffer.alloc(0);
  /** Samples seen so far. */
  samples = 0;

  constructor(points: number) {
    this.points = points;
  }

  /** Raw `f32le` bytes, cut anywhere (a sample may span two chunks). */
  push(chunk: Buffer): void {
    const bytes = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    const whole = bytes.length - (bytes.length % 4);
    for (let offset = 0; offset < whole; offset += 4) this.add(bytes.readFloatLE(offset));
    this.carry = Buffer.from(bytes.subarray(whole));
  }

  /** At most `points` [min, max] pairs over the whole stream, each in -1…1. */
  finish(): Array<[number, number]> {
    if (this.inBlock > 0) this.closeBlock();
    const count = this.mins.length;
    const pairs = Math.min(this.points, count);
    const result: Array<[number, number]> = [];
    for (let i = 0; i < pairs; i++) {
      const from = Math.floor((i * count) / pairs);
      const to = Math.floor(((i + 1) * count) / pairs);
      result.push([Math.min(...this.mins.slice(from, to)), Math.max(...this.maxs.slice(from, to))]);
    }
    return result;
  }

  private add(sample: number): void {
    if (sample < this.min) this.min = sample;
    if (sample > this.max) this.max = sample;
    this.samples += 1;
    this.inBlock += 1;
    if (this.inBlock === this.blockSize) this.closeBlock();
  }

  private closeBlock(): void {
    this.mins.push(this.min);
    this.maxs.push(this.max);
    this.min = Infinity;
    this.max = -Infinity;
    this.inBlock = 0;
    if (this.mins.length < 2 * this.points) return;
    // Pairs of blocks become one block twice the size.
    for (let i = 0; i < this.points; i++) {
      this.mins[i] = Math.min(this.mins[2 * i]!, this.mins[2 * i + 1]!);
      this.maxs[i] = Math.max(this.maxs[2 * i]!, this.maxs[2 * i + 1]!);
    }
    this.mins.length = this.points;
    this.maxs.length = this.points;
    this.blockSize *= 2;
  }
}
