import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { thumbHashToRGBA } from 'thumbhash';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMediaPool, type MediaPool } from '../processors/mediaPool.ts';
import type { ImageTask, MediaOutcome, VideoTask } from '../processors/mediaTasks.ts';
import type { Thumbhash } from '../processors/thumbhash.ts';
import { cameraJpeg, makeSampleDir } from './support/imageSamples.ts';
import { h264Clip, portraitClip } from './support/videoSamples.ts';

const SLOW = 180_000;
/** Per channel, 0-255: a placeholder's colour is a blur of the picture, not the picture. */
const COLOUR_TOLERANCE = 12;

let samples: { dir: string; cleanup: () => Promise<void> };
let pool: MediaPool;
let outputs = 0;

beforeAll(async () => {
  samples = await makeSampleDir();
  pool = createMediaPool(2);
});
afterAll(async () => {
  await pool?.close();
  await samples?.cleanup();
});

/** The mean of each channel, 0-255, of RGBA pixels. */
function averageOf(rgba: Uint8Array): [number, number, number] {
  const sums = [0, 0, 0];
  for (let i = 0; i < rgba.length; i += 4) for (let c = 0; c < 3; c++) sums[c]! += rgba[i + c]!;
  const pixels = rgba.length / 4;
  return [sums[0]! / pixels, sums[1]! / pixels, sums[2]! / pixels];
}

async function placeholderOf(task: Omit<ImageTask, 'outputDir'> | Omit<VideoTask, 'outputDir'>): Promise<{ thumbhash: Thumbhash; thumbnail: string }> {
  outputs += 1;
  const outputDir = path.join(samples.dir, `out-${outputs}`);
  await mkdir(outputDir); // as the job handler makes it
  const outcome: MediaOutcome = await pool.run({ ...task, outputDir });
  if (!outcome.ok) throw new Error(`expected ok, got: ${outcome.reason}`);
  const thumbnail = outcome.outputs.find((o) => o.name === 'thumbnail');
  if (!thumbnail) throw new Error('no thumbnail');
  return { thumbhash: outcome.media.thumbhash as Thumbhash, thumbnail: thumbnail.path };
}

/** The hash decodes (thumbhash's own decoder) to the thumbnail's colours and shape. */
async function expectMatchesThumbnail({ thumbhash, thumbnail }: { thumbhash: Thumbhash; thumbnail: string }): Promise<void> {
  const bytes = Buffer.from(thumbhash.hash, 'base64');
  expect(bytes.length).toBeGreaterThan(5);
  expect(bytes.length).toBeLessThanOrEqual(30);
  const decoded = thumbHashToRGBA(bytes);
  const { data, info } = await sharp(thumbnail).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const want = averageOf(data);
  const got = averageOf(decoded.rgba);
  for (let c = 0; c < 3; c++) expect(Math.abs(got[c]! - want[c]!)).toBeLessThanOrEqual(COLOUR_TOLERANCE);
  // The stated average colour is the decoded one, and the shapes agree.
  const stated = [1, 3, 5].map((at) => parseInt(thumbhash.averageColor.slice(at, at + 2), 16));
  for (let c = 0; c < 3; c++) expect(Math.abs(stated[c]! - want[c]!)).toBeLessThanOrEqual(COLOUR_TOLERANCE);
  const ratio = info.width / info.height;
  expect(Math.abs(thumbhash.aspectRatio - ratio) / ratio).toBeLessThan(0.15);
  expect(Math.abs(decoded.w / decoded.h - ratio) / ratio).toBeLessThan(0.15);
}

describe('thumbhash placeholders', () => {
  it(
    "an image's comes from its upright thumbnail",
    async () => {
      const placeholder = await placeholderOf({ kind: 'image', input: await cameraJpeg(samples.dir, 1600, 1200), timeoutMs: 60_000, maxPixels: 1e8 });
      expect(placeholder.thumbhash.aspectRatio).toBeLessThan(1); // orientation 6: displayed portrait
      await expectMatchesThumbnail(placeholder);
    },
    SLOW,
  );

  it.each([
    ['landscape', (dir: string) => h264Clip(dir, { seconds: 2, width: 640, height: 360, name: 'landscape.mp4' })],
    ['portrait', (dir: string) => portraitClip(dir)],
  ])(
    "a %s video's comes from its poster's thumbnail",
    async (_shape, make) => {
      await expectMatchesThumbnail(await placeholderOf({ kind: 'video', input: await make(samples.dir), timeoutMs: 120_000, maxPixels: 1e8 }));
    },
    SLOW,
  );
});
