import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ffmpegWords } from '../processors/ffmpeg.ts';
import { createMediaPool } from '../processors/mediaPool.ts';
import { rotationOf } from '../processors/ffprobe.ts';
import { liveProcessesWith, zombieChildren } from './support/childProcesses.ts';
import type { MediaOutcome, ProducedOutput, VideoTask } from '../processors/mediaTasks.ts';
import { videoJob } from '../processors/videoJob.ts';
import { okOutcome, output } from './support/mediaOutcomes.ts';
import {
  anamorphicClip,
  audioOnly,
  corruptMp4,
  emptyStreamMp4,
  ffmpegRun,
  ffprobeJson,
  h264Clip,
  hdrClip,
  makeSampleDir,
  noFramesMp4,
  phoneClip,
  portraitClip,
  removeSampleDir,
  sdClip,
  silentClip,
  textFile,
  topLevelBoxes,
  truncatedMp4,
  variableFrameRateClip,
  webmClip,
  zeroLengthFile,
  type ProbeJson,
} from './support/videoSamples.ts';

// Two slow cores shared with other test files: short clips where length does not matter,
// generous timeouts everywhere.
const SLOW = 180_000;

let dir: string;
const samples: Record<string, string> = {};
let outputCounter = 0;

/** A fresh output folder whose path appears in ffmpeg's command line (found with pgrep). */
function outputDirFor(name: string): string {
  outputCounter += 1;
  return path.join(dir, `out-${name}-${process.pid}-${outputCounter}`);
}

interface Run {
  outcome: MediaOutcome;
  outputDir: string;
  progress: number[];
  ms: number;
}

/** The server's default MAX_VIDEO_PIXELS. */
const MAX_PIXELS = 7680 * 4320;

async function runJob(name: string, input: string, timeoutMs = 120_000, maxPixels = MAX_PIXELS): Promise<Run> {
  const outputDir = outputDirFor(name);
  const channel = new MessageChannel();
  const progress: number[] = [];
  channel.port1.on('message', (message: { percent: number }) => progress.push(message.percent));
  const started = Date.now();
  try {
    const outcome = await videoJob({ kind: 'video', input, outputDir, timeoutMs, maxPixels, port: channel.port2 });
    const ms = Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 100)); // let the last messages arrive
    console.log(`[videoJob] ${name}: ${ms} ms, ${progress.length} progress messages`);
    return { outcome, outputDir, progress, ms };
  } finally {
    channel.port1.close();
  }
}

async function waitUntil<T>(probe: () => Promise<T>, done: (value: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let value = await probe();
  while (!done(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    value = await probe();
  }
  return value;
}

function videoStream(probe: ProbeJson) {
  const stream = probe.streams.find((s) => s.codec_type === 'video');
  if (!stream) throw new Error('no video stream in the output');
  return stream;
}

/** The colour properties every mp4 carries: BT.709 primaries, transfer and matrix, limited range. */
function expectBt709(video: ProbeJson['streams'][number]): void {
  expect({ primaries: video.color_primaries, transfer: video.color_transfer, matrix: video.color_space, range: video.color_range }).toEqual({
    primaries: 'bt709',
    transfer: 'bt709',
    matrix: 'bt709',
    range: 'tv',
  });
}

/** Luma (0-255, full range) along the middle row of an image, at these fractions of its width. */
async function lumaRow(file: string, at: number[]): Promise<number[]> {
  const { data, info } = await sharp(file).greyscale().raw().toBuffer({ resolveWithObject: true });
  return at.map((f) => data[Math.floor(info.height / 2) * info.width + Math.floor(f * info.width)]!);
}

/** Every video packet's timestamp in seconds, in order. */
async function frameTimes(file: string): Promise<number[]> {
  const { stdout } = await promisify(execFile)('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', file]);
  return stdout.split('\n').filter(Boolean).map(Number).sort((a, b) => a - b);
}

function expectNoRotation(probe: ProbeJson): void {
  const video = videoStream(probe);
  expect(video.side_data_list?.filter((d) => d.side_data_type === 'Display Matrix') ?? []).toEqual([]);
  expect(video.tags?.rotate).toBeUndefined();
}

async function expectFaststart(file: string): Promise<void> {
  const types = topLevelBoxes(await readFile(file)).map((box) => box.type);
  expect(types).toContain('moov');
  expect(types).toContain('mdat');
  expect(types.indexOf('moov')).toBeLessThan(types.indexOf('mdat'));
}

async function expectJpeg(out: ProducedOutput, width: number, height: number): Promise<void> {
  expect(out.contentType).toBe('image/jpeg');
  const meta = await sharp(out.path).metadata();
  expect(meta.format).toBe('jpeg');
  expect([meta.width, meta.height]).toEqual([width, height]);
  expect([out.width, out.height]).toEqual([width, height]);
  expect(out.size).toBe((await readFile(out.path)).length);
}

beforeAll(async () => {
  dir = await makeSampleDir();
  const started = Date.now();
  // One after another: two cores.
  samples.main = await h264Clip(dir); // 10 s 1280x720 H.264 + AAC
  samples.silent = await silentClip(dir, { seconds: 3 });
  samples.phone = await phoneClip(dir);
  samples.short = await h264Clip(dir, { seconds: 0.4, width: 320, height: 240, name: 'short.mp4' });
  samples.large = await h264Clip(dir, { seconds: 1, width: 2048, height: 1152, name: 'large.mp4' });
  samples.portrait = await portraitClip(dir);
  samples.hlg = await hdrClip(dir, 'arib-std-b67');
  samples.pq = await hdrClip(dir, 'smpte2084');
  samples.fps60 = await h264Clip(dir, { seconds: 1, width: 320, height: 240, fps: 60, audio: false, name: 'fps60.mp4' });
  samples.vfr = await variableFrameRateClip(dir);
  samples.sd = await sdClip(dir);
  samples.anamorphic = await anamorphicClip(dir);
  samples.webm = await webmClip(dir);
  samples.corrupt = await corruptMp4(dir);
  samples.truncated = await truncatedMp4(dir);
  samples.emptyStream = await emptyStreamMp4(dir);
  samples.noFrames = await noFramesMp4(dir);
  samples.zeroLength = await zeroLengthFile(dir);
  samples.audioOnly = await audioOnly(dir);
  samples.text = await textFile(dir);
  console.log(`[videoJob] samples generated in ${Date.now() - started} ms`);
}, SLOW);

afterAll(async () => {
  if (dir) await removeSampleDir(dir);
});

describe('videoJob', () => {
  it(
    'transcodes a 10 s 720p H.264+AAC clip: faststart mp4, poster, thumbnail, metadata, progress',
    async () => {
      const { outcome, outputDir, progress, ms } = await runJob('main', samples.main!);
      const ok = okOutcome(outcome);
      expect(ok.outputs.map((o) => o.name).sort()).toEqual(['mp4', 'poster', 'thumbnail']);

      expect(ok.media).toMatchObject({
        width: 1280,
        height: 720,
        rotation: 0,
        videoCodec: 'h264',
        audioCodec: 'aac',
        frameRate: 30,
        hasAudio: true,
        container: expect.stringContaining('mp4'),
      });
      expect(ok.media.duration).toBeCloseTo(10, 0);
      expect(ok.media.bitrate).toEqual(expect.any(Number));

      const mp4 = output(ok, 'mp4');
      expect(mp4.contentType).toBe('video/mp4');
      expect(mp4.path.startsWith(outputDir)).toBe(true);
      expect(mp4.size).toBe((await readFile(mp4.path)).length);
      await expectFaststart(mp4.path);
      const probe = await ffprobeJson(mp4.path);
      const video = videoStream(probe);
      const audio = probe.streams.filter((s) => s.codec_type === 'audio');
      expect(video.codec_name).toBe('h264');
      expect(video.pix_fmt).toBe('yuv420p');
      expectBt709(video);
      expect(audio.map((s) => s.codec_name)).toEqual(['aac']);
      expect(Number(audio[0]!.bit_rate)).toBeGreaterThan(100_000);
      expect(Number(audio[0]!.bit_rate)).toBeLessThan(140_000);
      // Not enlarged (720p stays 720p), even, aspect kept, within the box.
      expect([video.width, video.height]).toEqual([1280, 720]);
      expect([mp4.width, mp4.height]).toEqual([1280, 720]);
      expect(Number(probe.format.duration)).toBeCloseTo(10, 0);
      expectNoRotation(probe);

      await expectJpeg(output(ok, 'poster'), 1280, 720);
      await expectJpeg(output(ok, 'thumbnail'), 300, 169);
      expect((await readdir(outputDir)).sort()).toEqual(['poster.jpg', 'thumbnail.jpg', 'video.mp4']);

      // Progress: increasing, ends at 100, no more than ~4 a second.
      expect(progress.length).toBeGreaterThanOrEqual(3);
      for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThan(progress[i - 1]!);
      expect(progress.at(-1)).toBe(100);
      expect(progress.length).toBeLessThanOrEqual(Math.ceil(ms / 250) + 2);

      expect(await liveProcessesWith(outputDir)).toEqual([]);
    },
    SLOW,
  );

  it(
    'a video without audio gives an mp4 without an audio stream',
    async () => {
      const { outcome } = await runJob('silent', samples.silent!);
      const ok = okOutcome(outcome);
      expect(ok.media).toMatchObject({ hasAudio: false, audioCodec: null, width: 1280, height: 720 });
      const probe = await ffprobeJson(output(ok, 'mp4').path);
      expect(probe.streams.map((s) => s.codec_type)).toEqual(['video']);
      await expectFaststart(output(ok, 'mp4').path);
    },
    SLOW,
  );

  it(
    'a rotated phone video comes out upright (portrait, fitting the portrait box 1080x1920) with no rotation left',
    async () => {
      const source = await ffprobeJson(samples.phone!);
      expect(rotationOf(videoStream(source))).toBe(270); // display matrix: 90° counter-clockwise

      const { outcome } = await runJob('phone', samples.phone!);
      const ok = okOutcome(outcome);
      expect(ok.media).toMatchObject({ width: 1080, height: 1920, rotation: 270, hasAudio: true });

      // 1080x1920 upright: the box turns with the picture, so it keeps its size (it was 608x1080
      // in a landscape-only box).
      const mp4 = output(ok, 'mp4');
      expect([mp4.width, mp4.height]).toEqual([1080, 1920]);
      const probe = await ffprobeJson(mp4.path);
      const video = videoStream(probe);
      expect([video.width, video.height]).toEqual([1080, 1920]);
      expect(video.sample_aspect_ratio ?? '1:1').toBe('1:1');
      expectNoRotation(probe);

      await expectJpeg(output(ok, 'poster'), 1080, 1920);
      await expectJpeg(output(ok, 'thumbnail'), 169, 300);
      // Turned the right way (not just the right shape): stored left=red, right=blue, rotated
      // 90° counter-clockwise → blue on top, red at the bottom.
      const { data, info } = await sharp(output(ok, 'poster').path).raw().toBuffer({ resolveWithObject: true });
      const pixel = (x: number, y: number) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)];
      const [topR, , topB] = pixel(Math.floor(info.width / 2), 100);
      const [bottomR, , bottomB] = pixel(Math.floor(info.width / 2), info.height - 100);
      expect(topB).toBeGreaterThan(200);
      expect(topR).toBeLessThan(60);
      expect(bottomR).toBeGreaterThan(200);
      expect(bottomB).toBeLessThan(60);
    },
    SLOW,
  );

  // [sample, media width x height, mp4 width x height, thumbnail width x height, extra media]
  const shapes: Array<[string, [number, number], [number, number], [number, number], Record<string, unknown>]> = [
    // Shorter than 2 s: the poster comes from the middle (0.2 s), not from 1 s.
    ['short', [320, 240], [320, 240], [300, 225], { duration: 0.4 }],
    // Larger than the box: shrunk to fit, aspect kept.
    ['large', [2048, 1152], [1920, 1080], [300, 169], {}],
    // Portrait, stored upright: the portrait box, so full size (not 608x1080).
    ['portrait', [1080, 1920], [1080, 1920], [169, 300], { rotation: 0, hasAudio: false }],
    // Non-square pixels: stored 360x288, displayed 384x288; the mp4 gets square pixels.
    ['anamorphic', [384, 288], [384, 288], [300, 225], { hasAudio: false }],
    ['webm', [320, 240], [320, 240], [300, 225], { videoCodec: 'vp9', audioCodec: 'opus', container: 'matroska,webm' }],
  ];
  it.each(shapes)(
    '%s input: sizes',
    async (name, [mediaW, mediaH], [mp4W, mp4H], [thumbW, thumbH], extra) => {
      const { outcome } = await runJob(name, samples[name]!);
      const ok = okOutcome(outcome);
      expect(ok.media).toMatchObject({ width: mediaW, height: mediaH, ...extra });
      const mp4 = output(ok, 'mp4');
      const video = videoStream(await ffprobeJson(mp4.path));
      expect([mp4.width, mp4.height, video.width, video.height]).toEqual([mp4W, mp4H, mp4W, mp4H]);
      expect(video.sample_aspect_ratio ?? '1:1').toBe('1:1');
      await expectFaststart(mp4.path);
      await expectJpeg(output(ok, 'poster'), mp4W, mp4H);
      await expectJpeg(output(ok, 'thumbnail'), thumbW, thumbH);
    },
    SLOW,
  );

  // The grey ramp of the HDR samples, read at these points: signal 5% … 95% of full.
  const RAMP = [0.05, 0.15, 0.25, 0.5, 0.75, 0.95];
  it.each([
    ['hlg', 'arib-std-b67'],
    ['pq', 'smpte2084'],
  ])(
    '%s HDR (10-bit HEVC, BT.2020): tone-mapped to 8-bit H.264 BT.709, tagged so, poster alike',
    async (name, transfer) => {
      const source = videoStream(await ffprobeJson(samples[name]!));
      expect([source.codec_name, source.pix_fmt, source.color_transfer]).toEqual(['hevc', 'yuv420p10le', transfer]);
      const { outcome } = await runJob(name, samples[name]!);
      const ok = okOutcome(outcome);
      expect(ok.media).toMatchObject({ videoCodec: 'hevc', hdr: name, width: 640, height: 360 });
      const video = videoStream(await ffprobeJson(output(ok, 'mp4').path));
      expect([video.codec_name, video.pix_fmt, video.width, video.height]).toEqual(['h264', 'yuv420p', 640, 360]);
      expectBt709(video);
      const poster = await lumaRow(output(ok, 'poster').path, RAMP);
      console.log(`[videoJob] ${name} ramp → ${poster.join(' ')}`);
      for (let i = 1; i < poster.length; i++) expect(poster[i]!).toBeGreaterThanOrEqual(poster[i - 1]!);
      if (name === 'hlg') {
        // HLG is made to look right on SDR screens as it is: the curve stays close to the
        // signal (within 10 of 255 at every point), neither washed out nor crushed.
        RAMP.forEach((f, i) => expect(Math.abs(poster[i]! - f * 255)).toBeLessThan(10));
      } else {
        // PQ codes absolute light: 15% is ~1 nit (near black in SDR, not 15% grey), 50% is
        // ~92 nits (about SDR's white level, mid-bright after tone mapping) and 75% (~1000 nits,
        // a highlight) is compressed into white rather than clipped earlier.
        expect(poster[1]!).toBeLessThan(0.15 * 255 - 8);
        expect(poster[3]!).toBeGreaterThan(100);
        expect(poster[3]!).toBeLessThan(200);
        expect(poster[4]!).toBeGreaterThan(240);
      }
    },
    SLOW,
  );

  it(
    'an SD (BT.601) clip is converted to the BT.709 matrix it is tagged with: its green stays green',
    async () => {
      const ok = okOutcome((await runJob('sd', samples.sd!)).outcome);
      const mp4 = output(ok, 'mp4').path;
      expectBt709(videoStream(await ffprobeJson(mp4)));
      // Decoded as a player does, by the tag. Unconverted, BT.601 numbers read as BT.709 give
      // about (19, 167, 61).
      const frame = path.join(dir, 'sd-frame.png');
      await promisify(execFile)('ffmpeg', ['-v', 'error', '-y', '-i', mp4, '-frames:v', '1', '-vf', 'scale=in_color_matrix=bt709', '-pix_fmt', 'rgb24', frame]);
      for (const file of [frame, output(ok, 'poster').path]) {
        const [r, g, b] = await sharp(file).extract({ left: 160, top: 120, width: 1, height: 1 }).raw().toBuffer();
        expect(Math.abs(r! - 32)).toBeLessThan(8);
        expect(Math.abs(g! - 192)).toBeLessThan(8);
        expect(Math.abs(b! - 64)).toBeLessThan(8);
      }
    },
    SLOW,
  );

  it(
    '60 fps and variable-frame-rate clips keep every frame at its own time',
    async () => {
      const fps60 = okOutcome((await runJob('fps60', samples.fps60!)).outcome);
      expect(fps60.media).toMatchObject({ frameRate: 60 });
      const out60 = videoStream(await ffprobeJson(output(fps60, 'mp4').path));
      expect([out60.avg_frame_rate, (out60 as { nb_frames?: string }).nb_frames]).toEqual(['60/1', '60']);

      // 30 frames in the first second, 60 in the next: the mp4 muxer's constant-rate default
      // would make that 120 frames (each of the first 30 twice).
      const sourceTimes = await frameTimes(samples.vfr!);
      expect(sourceTimes).toHaveLength(90);
      const vfr = okOutcome((await runJob('vfr', samples.vfr!)).outcome);
      const times = await frameTimes(output(vfr, 'mp4').path);
      expect(times).toHaveLength(90);
      const start = times[0]!;
      times.forEach((t, i) => expect(t - start).toBeCloseTo(sourceTimes[i]! - sourceTimes[0]!, 3));
    },
    SLOW,
  );

  const refusals: Array<[string, RegExp]> = [
    ['corrupt', /^not a readable video: .*moov atom not found/],
    ['truncated', /^the video is truncated: .*partial file/],
    ['emptyStream', /^cannot decode the video: |^no video frame could be decoded/],
    ['noFrames', /^no video stream \(found: no streams at all\)/],
    ['zeroLength', /^not a readable video: the file is empty/],
    ['audioOnly', /^no video stream \(found: audio aac\)/],
    ['text', /^not a readable video: .*(Invalid data|not on whitelist)/],
  ];
  it.each(refusals)(
    '%s input → ok:false with ffmpeg/ffprobe words, nothing left behind',
    async (name, reason) => {
      const { outcome, outputDir } = await runJob(name, samples[name]!);
      expect(outcome.ok).toBe(false);
      if (outcome.ok) return;
      console.log(`[videoJob] ${name}: ${outcome.reason}`);
      expect(outcome.reason).toMatch(reason);
      expect(outcome.reason.length).toBeLessThanOrEqual(500);
      expect(outcome.reason).not.toContain(dir); // server paths are not in reasons
      expect(await readdir(outputDir)).toEqual([]);
      expect(await liveProcessesWith(outputDir)).toEqual([]);
    },
    SLOW,
  );

  it(
    'times out: ffmpeg is SIGKILLed and reaped, ok:false, no output left',
    async () => {
      // The main clip 60 times over (stream-copied, so made at once): ten minutes of 720p that no
      // machine transcodes inside the limit, so the limit is what ends the job, however fast the machine.
      const long = path.join(dir, 'long.mp4');
      await ffmpegRun(['-stream_loop', '59', '-i', samples.main!, '-c', 'copy', '-y', long]);
      const { outcome, outputDir } = await runJob('timeout', long, 2_500);
      expect(outcome).toEqual({ ok: false, reason: expect.stringMatching(/^timed out after \d+(\.\d)? s \(limit 2\.5 s\)$/) });
      expect(await liveProcessesWith(outputDir)).toEqual([]);
      expect(await readdir(outputDir)).toEqual([]);
    },
    SLOW,
  );

  it('refuses frames over the pixel limit before decoding any (ok:false, no ffmpeg run, no output)', async () => {
    const { outcome, outputDir, progress } = await runJob('too-many-pixels', samples.main!, 120_000, 1280 * 720 - 1);
    expect(outcome).toEqual({ ok: false, reason: `video frames are 1280 x 720 pixels, over the limit of ${1280 * 720 - 1}` });
    // Progress comes from ffmpeg's transcode alone: none means no frame was decoded.
    expect(progress).toEqual([]);
    expect(await readdir(outputDir)).toEqual([]);
  });

  it('trims ffmpeg words', () => {
    const stderr =
      '[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0c0a1b2c0] moov atom not found\r\n' +
      'frame=   10 fps=0.0 q=0.0 size=       0kB time=00:00:00.33 bitrate=   0.0kbits/s speed=0.6x\r' +
      'file:/srv/tmp/x/original: Invalid data found when processing input\n' +
      'file:/srv/tmp/x/original: Invalid data found when processing input\n';
    expect(ffmpegWords(stderr, [['/srv/tmp/x/original', 'input']])).toBe(
      'moov atom not found; input: Invalid data found when processing input',
    );
  });
});

describe('videoJob on a piscina worker thread', () => {
  const oneThreadPool = () =>
    new Piscina<VideoTask, MediaOutcome>({
      filename: new URL('./support/videoWorker.ts', import.meta.url).href,
      minThreads: 0,
      maxThreads: 1,
    });

  it(
    'cancelling a video job through the media pool kills and reaps ffmpeg; the thread runs the next job',
    async () => {
      const pool = createMediaPool(1);
      try {
        const outputDir = outputDirFor('cancel');
        const controller = new AbortController();
        let firstProgress: () => void = () => undefined;
        const progressed = new Promise<void>((resolve) => (firstProgress = resolve));
        const running = pool.run({ kind: 'video', input: samples.main!, outputDir, timeoutMs: 120_000, maxPixels: MAX_PIXELS }, { signal: controller.signal, onProgress: () => firstProgress() });
        running.catch(() => undefined);
        await progressed; // the transcode is under way
        expect((await liveProcessesWith(outputDir)).some((line) => line.includes('ffmpeg'))).toBe(true);

        controller.abort(new Error('lease lost'));
        await expect(running).rejects.toThrow('lease lost');
        expect(await liveProcessesWith(outputDir)).toEqual([]);
        expect(await zombieChildren()).toEqual([]);
        expect(await readdir(outputDir)).toEqual([]);

        const next = await pool.run({ kind: 'video', input: samples.silent!, outputDir: outputDirFor('after-cancel'), timeoutMs: 120_000, maxPixels: MAX_PIXELS });
        expect(next.ok).toBe(true);
      } finally {
        await pool.close();
      }
    },
    SLOW,
  );

  it(
    'a terminated thread (piscina aborting its task) leaves no ffmpeg running',
    async () => {
      const pool = oneThreadPool();
      try {
        const outputDir = outputDirFor('abort');
        const controller = new AbortController();
        const channel = new MessageChannel();
        const firstProgress = new Promise<number>((resolve) => channel.port1.once('message', (m: { percent: number }) => resolve(m.percent)));
        const task: VideoTask = { kind: 'video', input: samples.main!, outputDir, timeoutMs: 120_000, maxPixels: MAX_PIXELS, port: channel.port2 };
        const running = pool.run(task, { signal: controller.signal, transferList: [channel.port2] });
        running.catch(() => undefined);

        await firstProgress; // the transcode is under way
        const before = await liveProcessesWith(outputDir);
        expect(before.some((line) => line.includes('ffmpeg'))).toBe(true);

        const abortedAt = Date.now();
        controller.abort();
        await expect(running).rejects.toThrow(/abort/i);
        const after = await waitUntil(() => liveProcessesWith(outputDir), (live) => live.length === 0, 10_000);
        // What is left: the killed ffmpeg and its guardian as zombies (nobody is left to reap
        // them in the terminated thread; they go when this process exits).
        const zombies = await zombieChildren();
        console.log(`[videoJob] abort: ffmpeg gone ${Date.now() - abortedAt} ms after the abort; zombie children: ${JSON.stringify(zombies)}`);
        expect(after).toEqual([]);
        channel.port1.close();
      } finally {
        await pool.destroy();
      }
    },
    SLOW,
  );

  it(
    'runs a whole job on a worker thread (fluent-ffmpeg, sharp and the guardians all work there)',
    async () => {
      const pool = oneThreadPool();
      try {
        const outputDir = outputDirFor('pool');
        const ok = okOutcome(await pool.run({ kind: 'video', input: samples.phone!, outputDir, timeoutMs: 120_000, maxPixels: MAX_PIXELS }));
        expect([output(ok, 'mp4').width, output(ok, 'mp4').height]).toEqual([1080, 1920]);
        expect(await liveProcessesWith(outputDir)).toEqual([]);
      } finally {
        await pool.destroy();
      }
    },
    SLOW,
  );
});
