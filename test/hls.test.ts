import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PutBucketCorsCommand } from '@aws-sdk/client-s3';
import puppeteer, { type Browser } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renditionsFor } from '../processors/hlsLadder.ts';
import type { MediaOutcome, ProducedOutput } from '../processors/mediaTasks.ts';
import { videoJob } from '../processors/videoJob.ts';
import { createLinkSigners } from '../server/auth/signedLinks.ts';
import { bytesLeft } from '../server/infra/db/quotas.ts';
import type { RunningServer } from '../server/main/start.ts';
import { repoRoot, testS3Client } from './services/env.ts';
import { npmScriptArgs } from './support/processes.ts';
import { eventually } from './support/eventually.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';
import { ffprobeJson, h264Clip, hdrClip, makeSampleDir, portraitClip, removeSampleDir, topLevelBoxes } from './support/videoSamples.ts';

// Two slow cores shared with other test files: generous timeouts everywhere.
const SLOW = 600_000;
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ladder = [
  { shortSide: 1080, maxrate: 8_000_000 },
  { shortSide: 720, maxrate: 4_000_000 },
  { shortSide: 480, maxrate: 2_000_000 },
  { shortSide: 360, maxrate: 1_000_000 },
];
const segmentSeconds = 6;

let dir: string;
let clip20: string;

beforeAll(async () => {
  dir = await makeSampleDir();
  clip20 = await h264Clip(dir, { seconds: 20, width: 1280, height: 720 });
}, SLOW);
afterAll(async () => {
  if (dir) await removeSampleDir(dir);
});

async function runJob(input: string, name: string): Promise<Extract<MediaOutcome, { ok: true }>> {
  const outcome = await videoJob({ kind: 'video', input, outputDir: path.join(dir, `out-${name}`), timeoutMs: SLOW, maxPixels: 1e8, hls: { ladder, segmentSeconds }, storyboard: true });
  if (!outcome.ok) throw new Error(`video job refused ${name}: ${outcome.reason}`);
  return outcome;
}

function outputOf(outcome: { outputs: ProducedOutput[] }, name: string): ProducedOutput {
  const output = outcome.outputs.find((o) => o.name === name);
  if (!output) throw new Error(`no ${name} output`);
  return output;
}

interface Variant {
  uri: string;
  bandwidth: number;
  width: number;
  height: number;
  codecs: string;
}

function variantsOf(master: string): Variant[] {
  const lines = master.split('\n');
  return lines.flatMap((line, i) => {
    const match = /^#EXT-X-STREAM-INF:(.*)$/.exec(line);
    if (!match) return [];
    const attributes = match[1]!;
    const [width, height] = /RESOLUTION=(\d+)x(\d+)/.exec(attributes)!.slice(1).map(Number);
    return [{ uri: lines[i + 1]!, bandwidth: Number(/(?:^|,)BANDWIDTH=(\d+)/.exec(attributes)![1]), width: width!, height: height!, codecs: /CODECS="([^"]+)"/.exec(attributes)![1]! }];
  });
}

/** The media playlist's segments: `#EXTINF` durations and URIs, and the init segment (`#EXT-X-MAP`). */
function segmentsOf(playlist: string): { init: string; segments: { seconds: number; uri: string }[] } {
  const init = /#EXT-X-MAP:URI="([^"]+)"/.exec(playlist)![1]!;
  const segments: { seconds: number; uri: string }[] = [];
  const lines = playlist.split('\n');
  lines.forEach((line, i) => {
    const extinf = /^#EXTINF:([\d.]+)/.exec(line);
    if (extinf) segments.push({ seconds: Number(extinf[1]), uri: lines[i + 1]! });
  });
  return { init, segments };
}

/** Whether a segment, read after its init segment (as a player does), starts with a keyframe. */
async function startsOnKeyframe(hlsDir: string, init: string, segment: string): Promise<boolean> {
  const joined = path.join(dir, `joined-${path.basename(hlsDir)}-${segment}.mp4`);
  await writeFile(joined, Buffer.concat([await readFile(path.join(hlsDir, init)), await readFile(path.join(hlsDir, segment))]));
  const flags = await new Promise<string>((resolve, reject) =>
    execFile('ffprobe', ['-v', 'error', '-select_streams', 'v', '-show_entries', 'packet=flags', '-read_intervals', '%+#1', '-of', 'csv=p=0', joined], (error, stdout) =>
      error ? reject(error) : resolve(stdout.trim()),
    ),
  );
  return flags.startsWith('K');
}

describe('the video job: HLS ladder and storyboard from one decode', () => {
  let outcome: Extract<MediaOutcome, { ok: true }>;
  beforeAll(async () => {
    outcome = await runJob(clip20, 'landscape');
  }, SLOW);

  it('writes a master playlist listing renditions never above the source, with bandwidth, codecs and resolution', async () => {
    const hls = outputOf(outcome, 'hls');
    expect(hls.files?.[0]).toBe('master.m3u8');
    const variants = variantsOf(await readFile(path.join(hls.path, 'master.m3u8'), 'utf8'));
    // 1280x720: its own size on top, then the rungs below; no 1080p.
    expect(variants.map((v) => [v.width, v.height])).toEqual([[1280, 720], [854, 480], [640, 360]]);
    for (const variant of variants) {
      expect(variant.codecs).toMatch(/^avc1\.64[0-9a-f]{4},mp4a\.40\.2$/);
      expect(variant.bandwidth).toBeGreaterThan(0);
    }
    // Each rung's peak stays under its cap (bufsize is twice the rate, so a segment may reach up to it).
    expect(variants[1]!.bandwidth).toBeLessThan(2 * 2_000_000);
    expect(variants[2]!.bandwidth).toBeLessThan(2 * 1_000_000);
    expect(variants[0]!.bandwidth).toBeGreaterThan(variants[1]!.bandwidth);
    expect(variants[1]!.bandwidth).toBeGreaterThan(variants[2]!.bandwidth);
    // Its size is every file's.
    const sizes = await Promise.all(hls.files!.map(async (file) => (await readFile(path.join(hls.path, file))).length));
    expect(hls.size).toBe(sizes.reduce((a, b) => a + b, 0));
  });

  it('cuts every rendition at the same keyframes into segments within the target, which ffprobe reads', async () => {
    const hls = outputOf(outcome, 'hls');
    const variants = variantsOf(await readFile(path.join(hls.path, 'master.m3u8'), 'utf8'));
    const durations: number[][] = [];
    for (const variant of variants) {
      const playlistFile = path.join(hls.path, variant.uri);
      const { init, segments } = segmentsOf(await readFile(playlistFile, 'utf8'));
      durations.push(segments.map((s) => s.seconds));
      expect(segments.reduce((sum, s) => sum + s.seconds, 0)).toBeCloseTo(20, 0);
      segments.forEach((segment, i) => {
        expect(segment.seconds).toBeLessThanOrEqual(segmentSeconds + 0.1);
        if (i < segments.length - 1) expect(segment.seconds).toBeGreaterThanOrEqual(4);
      });
      for (const segment of segments) expect(await startsOnKeyframe(hls.path, init, segment.uri)).toBe(true);
      const probe = await ffprobeJson(playlistFile);
      const video = probe.streams.find((s) => s.codec_type === 'video')!;
      expect([video.codec_name, video.width, video.height]).toEqual(['h264', variant.width, variant.height]);
      expect(probe.streams.some((s) => s.codec_type === 'audio' && s.codec_name === 'aac')).toBe(true);
    }
    // Aligned: every rendition's segments are as long as every other's.
    for (const list of durations) expect(list).toEqual(durations[0]);
  });

  it('reuses the top rendition for the mp4: same size, one encode', async () => {
    const mp4 = outputOf(outcome, 'mp4');
    const hls = outputOf(outcome, 'hls');
    expect([mp4.width, mp4.height]).toEqual([hls.width, hls.height]);
    const probe = await ffprobeJson(mp4.path);
    expect(probe.streams.map((s) => s.codec_type).sort()).toEqual(['audio', 'video']);
    // Through the tee muxer too, +faststart: moov before mdat.
    const boxes = topLevelBoxes(await readFile(mp4.path)).map((box) => box.type);
    expect(boxes.indexOf('moov')).toBeLessThan(boxes.indexOf('mdat'));
  });

  it('makes a storyboard whose cues cover the whole clip and point inside the sprite', async () => {
    const storyboard = outputOf(outcome, 'storyboard');
    expect(storyboard.files).toEqual(['storyboard.vtt', 'sprite.jpg']);
    const vtt = await readFile(path.join(storyboard.path, 'storyboard.vtt'), 'utf8');
    expect(vtt.startsWith('WEBVTT')).toBe(true);
    const seconds = (t: string) => t.split(':').reduce((sum, part) => sum * 60 + Number(part), 0);
    const cues = [...vtt.matchAll(/([\d:.]+) --> ([\d:.]+)\n(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)/g)].map((m) => ({
      start: seconds(m[1]!), end: seconds(m[2]!), file: m[3], x: Number(m[4]), y: Number(m[5]), w: Number(m[6]), h: Number(m[7]),
    }));
    expect(cues.length).toBeGreaterThanOrEqual(10);
    expect(cues[0]!.start).toBe(0);
    expect(cues.at(-1)!.end).toBeCloseTo(20, 1);
    cues.forEach((cue, i) => {
      expect(cue.file).toBe('sprite.jpg');
      if (i > 0) expect(cue.start).toBe(cues[i - 1]!.end);
      expect(cue.x + cue.w).toBeLessThanOrEqual(storyboard.width!);
      expect(cue.y + cue.h).toBeLessThanOrEqual(storyboard.height!);
    });
    const sprite = await ffprobeJson(path.join(storyboard.path, 'sprite.jpg'));
    expect([sprite.streams[0]!.width, sprite.streams[0]!.height]).toEqual([storyboard.width, storyboard.height]);
  });

  it('gives a portrait clip portrait renditions', async () => {
    const portrait = await runJob(await portraitClip(dir, 3), 'portrait');
    const hls = outputOf(portrait, 'hls');
    const variants = variantsOf(await readFile(path.join(hls.path, 'master.m3u8'), 'utf8'));
    expect(variants.map((v) => [v.width, v.height])).toEqual([[1080, 1920], [720, 1280], [480, 854], [360, 640]]);
    // No storyboard for a clip this short.
    expect(portrait.outputs.some((o) => o.name === 'storyboard')).toBe(false);
  }, SLOW);

  it("tone-maps an HDR clip's renditions to BT.709, as the mp4 is", async () => {
    const hdr = await runJob(await hdrClip(dir, 'arib-std-b67', { seconds: 2, width: 1280, height: 720 }), 'hdr');
    const hls = outputOf(hdr, 'hls');
    for (const variant of variantsOf(await readFile(path.join(hls.path, 'master.m3u8'), 'utf8'))) {
      const video = (await ffprobeJson(path.join(hls.path, variant.uri))).streams.find((s) => s.codec_type === 'video')!;
      expect([video.color_primaries, video.color_transfer, video.color_space, video.pix_fmt]).toEqual(['bt709', 'bt709', 'bt709', 'yuv420p']);
    }
  }, SLOW);

  it('never lists a rendition above the source, whatever the ladder', () => {
    const box = { width: 1920, height: 1080 };
    expect(renditionsFor({ width: 640, height: 360 }, box, ladder).map((r) => r.name)).toEqual(['360p']);
    expect(renditionsFor({ width: 3840, height: 2160 }, box, ladder).map((r) => r.name)).toEqual(['1080p', '720p', '480p', '360p']);
    expect(renditionsFor({ width: 1000, height: 562 }, box, ladder).map((r) => [r.name, r.maxrate])).toEqual([['562p', 4_000_000], ['480p', 2_000_000], ['360p', 1_000_000]]);
  });
});

/** A page on no origin at all (about:blank): every HLS answer must carry CORS for hls.js to read it. */
const playerPage = `<!doctype html><video muted playsinline></video>`;

interface PlayerWindow {
  Hls: { new (config?: object): HlsInstance; Events: Record<string, string> };
  hls: HlsInstance;
  failure?: string;
}
interface HlsInstance {
  levels: { width: number; height: number }[];
  currentLevel: number;
  loadSource(url: string): void;
  attachMedia(video: HTMLVideoElement): void;
  on(event: string, handler: (event: string, data: { fatal?: boolean; type?: string; details?: string }) => void): void;
}

describe.each(setups)('HLS served with tokens, played by hls.js in Chromium (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let browser: Browser;
  let token: string;
  let status: Awaited<ReturnType<typeof waitUntilSettled>>;

  beforeAll(async () => {
    if (!existsSync(chromiumPath)) throw new Error(`Chromium not found at ${chromiumPath}: run \`sudo bash test/services/install.sh\`, or set CHROMIUM_PATH`);
    // This file's four-rung ladder (not the three-rung default): three levels to switch between.
    const hlsLadder = ladder.map((rung) => `${rung.shortSide}:${rung.maxrate / 1_000_000}M`).join(',');
    environment = await createTestEnvironment(setup, { AUTH_SECRET: testAuthSecret, HLS: 'on', HLS_LADDER: hlsLadder, WORKER_THREADS: '2' });
    if (setup === 'scaleout') {
      // Segments are redirected to the bucket: a page on another origin reads them only with the bucket's GET CORS.
      await testS3Client().send(new PutBucketCorsCommand({
        Bucket: environment.env.S3_BUCKET!,
        CORSConfiguration: { CORSRules: [{ AllowedOrigins: ['*'], AllowedMethods: ['GET', 'HEAD'], AllowedHeaders: ['*'], MaxAgeSeconds: 3600 }] },
      }));
    }
    server = await startTestServer(environment);
    token = await mintToken('hls-owner');
    const { url } = await tusUpload(server.url, await readFile(clip20), { filename: 'clip.mp4', filetype: 'video/mp4', chunkSize: 8 * 1024 * 1024, headers: bearer(token) });
    status = await waitUntilSettled(server.url, uploadIdOf(url), SLOW, bearer(token));
    browser = await puppeteer.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage', '--autoplay-policy=no-user-gesture-required'] });
  }, SLOW);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await environment?.destroy();
  });

  const hlsLink = () => status.outputs.find((o) => o.name === 'hls')!.url!;

  it('plays the master playlist from its signed link, then every level at its own resolution', async () => {
    expect(status.status).toBe('ready');
    expect(status.outputs.map((o) => o.name).sort()).toEqual(['hls', 'mp4', 'poster', 'storyboard', 'thumbnail']);
    const page = await browser.newPage();
    try {
      await page.setContent(playerPage);
      await page.addScriptTag({ url: `${server.url}/assets/hls.min.js` });
      await page.evaluate((url) => {
        const w = window as unknown as PlayerWindow;
        const video = document.querySelector('video')!;
        const hls = new w.Hls();
        w.hls = hls;
        hls.on(w.Hls.Events.ERROR!, (_event, data) => {
          if (data.fatal) w.failure = `${data.type}: ${data.details}`;
        });
        hls.on(w.Hls.Events.MANIFEST_PARSED!, () => void video.play().catch((error: Error) => (w.failure = String(error))));
        hls.loadSource(url);
        hls.attachMedia(video);
      }, hlsLink());
      const state = () =>
        page.evaluate(() => {
          const w = window as unknown as PlayerWindow;
          const video = document.querySelector('video')!;
          return { failure: w.failure, time: video.currentTime, width: video.videoWidth, height: video.videoHeight, levels: w.hls.levels.map((l) => [l.width, l.height]) };
        });
      const played = await eventually('playback past 3 s', async () => {
        const now = await state();
        if (now.failure) throw new Error(`hls.js failed: ${now.failure}`);
        return now.time > 3 && now;
      }, SLOW);
      // hls.js orders its levels by bandwidth, lowest first.
      expect(played.levels).toEqual([[640, 360], [854, 480], [1280, 720]]);
      for (const [level, [width, height]] of played.levels.entries()) {
        await page.evaluate((level) => {
          const w = window as unknown as PlayerWindow;
          w.hls.currentLevel = level;
          document.querySelector('video')!.currentTime = 1;
        }, level);
        await eventually(`level ${level} playing at ${width}x${height}`, async () => {
          const now = await state();
          if (now.failure) throw new Error(`hls.js failed: ${now.failure}`);
          return now.width === width && now.height === height && now.time > 1.5;
        }, SLOW);
      }
    } finally {
      await page.close();
    }
  }, SLOW);

  it('the demo page loads hls.js, which plays the hls output on video tiles', async () => {
    const page = await browser.newPage();
    try {
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(String(error)));
      expect((await page.goto(`${server.url}/`, { waitUntil: 'load' }))?.status()).toBe(200);
      expect(await page.evaluate(() => (window as unknown as { Hls?: { isSupported(): boolean } }).Hls?.isSupported())).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('answers every HLS file with CORS, its content type, and Range on segments', async () => {
    const master = await fetch(hlsLink(), { headers: { Origin: 'https://player.example' } });
    expect(master.status).toBe(200);
    expect(master.headers.get('content-type')).toBe('application/vnd.apple.mpegurl');
    expect(master.headers.get('access-control-allow-origin')).toBe('*');
    const variant = variantsOf(await master.text())[0]!;
    const playlistUrl = new URL(variant.uri, hlsLink());
    const playlist = await fetch(playlistUrl, { headers: { Origin: 'https://player.example' } });
    expect(playlist.headers.get('access-control-allow-origin')).toBe('*');
    const { segments } = segmentsOf(await playlist.text());
    const segment = await fetch(new URL(segments[0]!.uri, playlistUrl), { headers: { Origin: 'https://player.example', Range: 'bytes=0-99' } });
    expect(segment.status).toBe(206);
    expect(segment.headers.get('access-control-allow-origin')).toBe('*');
    expect(segment.headers.get('content-type')).toBe('video/iso.segment');
    expect((await segment.arrayBuffer()).byteLength).toBe(100);
  });

  it('refuses a tampered, an expired or a borrowed HLS link with 403, and files it does not cover with 404', async () => {
    const link = hlsLink();
    const [grant] = /\/outputs\/hls\/([^/]+)\//.exec(link)!.slice(1);
    const tampered = link.replace(grant!, `${grant!.slice(0, -2)}AA`);
    expect((await fetch(tampered)).status).toBe(403);
    // Minted with the server's own secret, as if 12 hours ago (HLS_LINK_TTL is 6 h, rounded up by at most a quarter).
    const signers = createLinkSigners(environment.config({ AUTH_SECRET: testAuthSecret }))!;
    const stale = signers.folders.pathSegment(status.id, 'hls/', Date.now() - 12 * 3600_000);
    const expired = await fetch(link.replace(grant!, stale));
    expect(expired.status).toBe(403);
    expect(await expired.text()).toMatch(/expired/);
    // Another upload's id under this grant: the signature names one upload only.
    const other = 'f'.repeat(32);
    expect((await fetch(link.replace(status.id, other))).status).toBe(403);
    // The grant for hls opens neither the storyboard nor a download.
    expect((await fetch(link.replace('/outputs/hls/', '/outputs/storyboard/').replace('master.m3u8', 'storyboard.vtt'))).status).toBe(403);
    const [expires, sig] = grant!.split('.');
    expect((await fetch(`${server.url}/api/uploads/${status.id}/files/mp4?expires=${expires}&sig=${sig}`)).status).toBe(403);
    // Files the output does not have, or names no output file has.
    expect((await fetch(link.replace('master.m3u8', '9999p.m3u8'))).status).toBe(404);
    expect((await fetch(link.replace('master.m3u8', '..%2Foriginal'))).status).toBe(404);
  });

  it('serves the storyboard from its own signed link, the sprite beside it', async () => {
    const link = status.outputs.find((o) => o.name === 'storyboard')!.url!;
    const vtt = await fetch(link);
    expect(vtt.status).toBe(200);
    expect(vtt.headers.get('content-type')).toBe('text/vtt');
    const sprite = await fetch(new URL('sprite.jpg', link), { redirect: 'follow' });
    expect(sprite.status).toBe(200);
    expect(sprite.headers.get('content-type')).toBe('image/jpeg');
  });

  it("counts the outputs, HLS files included, in the owner's stored bytes", async () => {
    const outputs = status.outputs.reduce((sum, o) => sum + o.size, 0);
    expect(outputs).toBeGreaterThan(status.outputs.find((o) => o.name === 'mp4')!.size);
    const left = await bytesLeft(server.services.context.db, { uploadsInFlight: 0, bytes: 1e10 }, 'hls-owner', 'f'.repeat(32));
    expect(left).toBe(1e10 - status.size! - outputs);
  });

  it('removes every HLS file with the upload', async () => {
    const link = hlsLink();
    expect((await fetch(`${server.url}/api/uploads/${status.id}`, { method: 'DELETE', headers: bearer(token) })).status).toBe(204);
    expect((await fetch(link)).status).toBe(410);
    if (setup === 'scaleout') {
      const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
      const listed = await testS3Client().send(new ListObjectsV2Command({ Bucket: environment.env.S3_BUCKET!, Prefix: `outputs/${status.id}/` }));
      expect(listed.KeyCount ?? 0).toBe(0);
    } else {
      expect(existsSync(path.join(environment.dataDir, 'uploads', 'outputs', status.id))).toBe(false);
    }
  });
});

describe('npm run requeue -- --outputs: a video ready before HLS gets its new outputs', () => {
  let environment: TestEnvironment;
  let server: RunningServer | undefined;

  beforeAll(async () => {
    environment = await createTestEnvironment('scaleout', { WORKER_THREADS: '2' });
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  const requeue = (args: string[]) =>
    new Promise<{ code: number; lines: Record<string, unknown>[]; stderr: string }>((resolve) => {
      const env = { PATH: process.env.PATH!, ...environment.env, HLS: 'on' };
      execFile(process.execPath, [...npmScriptArgs('server/main/requeue.ts'), ...args], { cwd: repoRoot, env, timeout: 60_000 }, (error, stdout, stderr) => {
        const lines = stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
        resolve({ code: error ? Number(error.code ?? 1) : 0, lines, stderr });
      });
    });

  it('runs the video job again for the outputs it lacks; the upload stays ready and served all along', async () => {
    server = await startTestServer(environment);
    const clip = await h264Clip(dir, { seconds: 12, width: 640, height: 360, name: 'before-hls.mp4' });
    const id = uploadIdOf((await tusUpload(server.url, await readFile(clip), { filename: 'before.mp4', filetype: 'video/mp4' })).url);
    const before = await waitUntilSettled(server.url, id, SLOW);
    expect(before.outputs.map((o) => o.name).sort()).toEqual(['mp4', 'poster', 'storyboard', 'thumbnail']);
    await server.close();
    // The same database and bucket, now with HLS on (as after an upgrade).
    server = await startTestServer(environment, { HLS: 'on' });

    const run = await requeue(['--outputs', 'hls,storyboard', id, 'f'.repeat(32)]);
    expect(run.lines).toEqual([
      { id, requeued: true, job: 'video', status: 'ready', adding: ['hls'] },
      { id: 'f'.repeat(32), requeued: false, reason: 'no such upload' },
    ]);
    expect(run.code).toBe(1);
    const after = await eventually('the hls output', async () => {
      const status = await fetchStatus(server!.url, id);
      expect(status.status).toBe('ready');
      return status.outputs.some((o) => o.name === 'hls') && status;
    }, SLOW, 200);
    expect(after.outputs.map((o) => o.name).sort()).toEqual(['hls', 'mp4', 'poster', 'storyboard', 'thumbnail']);
    expect((await fetch(after.outputs.find((o) => o.name === 'hls')!.url!)).status).toBe(200);
    // Asked again: it has them now.
    const again = await requeue(['--outputs', 'hls', id]);
    expect(again.lines).toEqual([{ id, requeued: false, reason: expect.stringContaining('nothing to add') }]);
  }, SLOW);
});
