import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMediaPool, type MediaPool } from '../processors/mediaPool.ts';
import type { AudioTask } from '../processors/mediaTasks.ts';
import { liveProcessesWith, zombieChildren } from './support/childProcesses.ts';
import { okOutcome as ok, output } from './support/mediaOutcomes.ts';
import {
  integratedLoudness,
  isomM4a,
  mp3,
  mp3WithCoverArt,
  opusOgg,
  phoneM4a,
  recordedWebm,
  silentM4a,
  truncatedM4a,
  wav,
} from './support/audioSamples.ts';
import { ffprobeJson, makeSampleDir, removeSampleDir, silentClip, topLevelBoxes, zeroLengthFile } from './support/videoSamples.ts';

// Two slow cores shared with other test files: generous timeouts everywhere.
const SLOW = 180_000;
const POINTS = 1000;

let dir: string;
let pool: MediaPool;
let outputs = 0;

function task(input: string, overrides: Partial<AudioTask> = {}): AudioTask {
  outputs += 1;
  return { kind: 'audio', input, outputDir: path.join(dir, `out-${outputs}`), timeoutMs: 120_000, loudness: -16, waveformPoints: POINTS, ...overrides };
}

interface Waveform {
  version: number;
  channels: number;
  sample_rate: number;
  samples_per_pixel: number;
  bits: number;
  length: number;
  data: number[];
}

beforeAll(async () => {
  dir = await makeSampleDir();
  pool = createMediaPool(2);
}, SLOW);

afterAll(async () => {
  await pool?.close();
  if (dir) await removeSampleDir(dir);
});

describe('audioJob (on the media pool)', () => {
  it.each([
    ['an iPhone voice memo (m4a, brand M4A)', phoneM4a, 'aac'],
    ['an Android recording (m4a, brand isom)', isomM4a, 'aac'],
    ['an mp3', mp3, 'mp3'],
    ['a wav', wav, 'pcm_s16le'],
    ['an Opus note in Ogg', opusOgg, 'opus'],
  ])(
    '%s becomes a faststart AAC m4a at -16 LUFS (±1 LU, ebur128) and a waveform of 1000 pairs',
    async (_name, make, codec) => {
      const input = await make(dir);
      // The source is quiet, as phone recordings are: the job must raise it by far more than 1 LU.
      expect(await integratedLoudness(input)).toBeLessThan(-30);
      const done = ok(await pool.run(task(input)));
      expect(done.outputs.map((o) => o.name).sort()).toEqual(['audio', 'waveform']);
      expect(done.media).toMatchObject({ audioCodec: codec, sampleRate: 48000, channels: 1, coverArt: false, loudness: { target: -16 } });
      expect(done.media.duration).toBeCloseTo(4, 1);

      const audio = output(done, 'audio');
      expect(audio).toMatchObject({ contentType: 'audio/mp4', width: null, height: null });
      const bytes = await readFile(audio.path);
      expect(audio.size).toBe(bytes.length);
      const boxes = topLevelBoxes(bytes).map((b) => b.type);
      expect(boxes.indexOf('moov')).toBeGreaterThanOrEqual(0);
      expect(boxes.indexOf('moov')).toBeLessThan(boxes.indexOf('mdat'));
      const probe = await ffprobeJson(audio.path);
      expect(probe.streams.map((s) => [s.codec_type, s.codec_name])).toEqual([['audio', 'aac']]);
      expect(Number(probe.streams[0]!.bit_rate)).toBeGreaterThan(90_000);
      expect(Number(probe.streams[0]!.bit_rate)).toBeLessThan(140_000);
      expect(Math.abs((await integratedLoudness(audio.path)) - -16)).toBeLessThanOrEqual(1);

      const waveform = JSON.parse(await readFile(output(done, 'waveform').path, 'utf8')) as Waveform;
      expect(waveform).toMatchObject({ version: 2, channels: 1, bits: 8, length: POINTS });
      expect(waveform.data).toHaveLength(2 * POINTS);
      for (let i = 0; i < waveform.data.length; i += 2) {
        expect(waveform.data[i]!).toBeGreaterThanOrEqual(-128);
        expect(waveform.data[i]!).toBeLessThanOrEqual(waveform.data[i + 1]!);
        expect(waveform.data[i + 1]!).toBeLessThanOrEqual(127);
      }
      // A tone at -16 LUFS swings well away from zero, and never clips.
      const peak = Math.max(...waveform.data.map(Math.abs));
      expect(peak).toBeGreaterThan(20);
      expect(peak).toBeLessThan(128);
    },
    SLOW,
  );

  it(
    'a WebM recorded by a browser (no duration in its header) gets its duration from decoding',
    async () => {
      const input = await recordedWebm(dir);
      expect((await ffprobeJson(input)).format.duration).toBeUndefined();
      const done = ok(await pool.run(task(input)));
      expect(done.media).toMatchObject({ audioCodec: 'opus', declaredDuration: null, container: 'matroska,webm' });
      expect(done.media.duration).toBeCloseTo(4, 1);
      expect(Math.abs((await integratedLoudness(output(done, 'audio').path)) - -16)).toBeLessThanOrEqual(1);
    },
    SLOW,
  );

  it(
    'normalises to the target setting: a loud stereo file brought down to -23 LUFS (EBU R128) stays stereo',
    async () => {
      const input = await wav(dir, { gainDb: 12, channels: 2 });
      expect(await integratedLoudness(input)).toBeGreaterThan(-23 + 3);
      const done = ok(await pool.run(task(input, { loudness: -23, waveformPoints: 50 })));
      expect(done.media).toMatchObject({ channels: 2, loudness: { target: -23 } });
      const audio = output(done, 'audio').path;
      expect(Math.abs((await integratedLoudness(audio)) - -23)).toBeLessThanOrEqual(1);
      expect((await ffprobeJson(audio)).streams[0]!.channels).toBe(2);
      const waveform = JSON.parse(await readFile(output(done, 'waveform').path, 'utf8')) as Waveform;
      expect(waveform.length).toBe(50);
    },
    SLOW,
  );

  it(
    'an mp3 with cover art: the picture is ignored, the sound processed',
    async () => {
      const input = await mp3WithCoverArt(dir);
      expect((await ffprobeJson(input)).streams.some((s) => s.disposition?.attached_pic === 1)).toBe(true);
      const done = ok(await pool.run(task(input)));
      expect(done.media).toMatchObject({ coverArt: true, audioCodec: 'mp3' });
      expect((await ffprobeJson(output(done, 'audio').path)).streams.map((s) => s.codec_type)).toEqual(['audio']);
    },
    SLOW,
  );

  it.each([
    ['a silent recording', silentM4a, /^the audio is silent \(loudness -inf LUFS/],
    ['a truncated m4a', truncatedM4a, /^not a readable audio file: moov atom not found/],
    ['a video without sound', (d: string) => silentClip(d, { seconds: 1 }), /^a video without sound: the file has no audio stream \(found: video h264\)/],
    ['an empty file', zeroLengthFile, /^not a readable audio file: the file is empty/],
  ])(
    '%s fails with a clear reason and leaves no output behind',
    async (_name, make, reason) => {
      const outputDir = task('').outputDir;
      const outcome = await pool.run(task(await make(dir), { outputDir }));
      expect(outcome.ok).toBe(false);
      expect(outcome.ok ? '' : outcome.reason).toMatch(reason);
      expect(await readdir(outputDir)).toEqual([]);
    },
    SLOW,
  );

  it(
    'cancelling an audio job through the pool kills and reaps ffmpeg, and leaves no output',
    async () => {
      const input = await wav(dir, { seconds: 600 });
      const job = task(input);
      const controller = new AbortController();
      const running = pool.run(job, { signal: controller.signal });
      running.catch(() => undefined);
      let seen: string[] = [];
      for (let i = 0; i < 600 && !seen.some((line) => line.includes('ffmpeg')); i++) {
        seen = await liveProcessesWith(input);
        if (seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(seen.some((line) => line.includes('ffmpeg'))).toBe(true);
      controller.abort(new Error('lease lost'));
      await expect(running).rejects.toThrow('lease lost');
      expect(await liveProcessesWith(input)).toEqual([]);
      expect(await zombieChildren()).toEqual([]);
      expect(await readdir(job.outputDir).catch(() => [])).toEqual([]);
    },
    SLOW,
  );
});
