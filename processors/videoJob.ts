import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import ffmpeg from 'fluent-ffmpeg';
import type { FfmpegCommand } from 'fluent-ffmpeg';
import sharp from 'sharp';
import type { MediaOutcome, OutputName, ProducedOutput, VideoTask } from './mediaTypes.ts';

/**
 * Video processing, run on a worker thread (piscina) by the job runner; ffmpeg and ffprobe run
 * as child processes of that thread.
 *
 *   1. ffprobe (JSON) → `media` metadata; no readable video stream → `{ ok: false }`.
 *   2. One frame at 1 s (the middle of shorter clips) → PNG → sharp → `poster` + `thumbnail`.
 *      Done first because it is cheap (~0.3 s) and proves a frame can be decoded at all before
 *      the expensive encode starts.
 *   3. ffmpeg (fluent-ffmpeg) → `mp4`: H.264 + AAC 128k, fits inside 1920x1080, +faststart.
 *   4. ffprobe the mp4 → its real width/height.
 *
 * Outcomes: the input is bad (unreadable, truncated, no video stream, nothing decodable) →
 * `{ ok: false, reason }` with ffmpeg's/ffprobe's own words (server paths replaced by `input` /
 * `output`); the job's time budget (`task.timeoutMs`, for all steps together) runs out → ffmpeg
 * is SIGKILLed, reaped, and `{ ok: false, reason: 'timed out after …' }`; anything else (ffmpeg
 * missing, disk full, out of memory, killed by someone else) is thrown so the runner retries.
 * On any failure no output file is left behind.
 *
 * Children are never left running (see `Children` and `guard` below):
 *   - timeout / error: SIGKILL, then wait for the exit (Node reaps it: no zombie);
 *   - the worker thread is terminated (piscina aborting a cancelled job) or the whole process
 *     dies: each child has a tiny `/bin/sh` guardian reading a pipe from this thread. Node
 *     closes a terminated thread's pipes (the kernel closes them when the process dies), the
 *     guardian reads EOF and SIGKILLs its child. Needed because Node runs no JavaScript in a
 *     thread being terminated: `process.on('exit')` does not fire there (checked on Node 20),
 *     and a child of a thread is a child of the process, which lives on. The killed child then
 *     stays a zombie (no CPU, no memory, one pid) until the process exits: its reaper, that
 *     thread's event loop, is gone, and Node only waits for pids it still has handles for.
 */

/** Demuxers ffmpeg may use: the container types the server accepts for video (mp4/mov, webm). */
export const VIDEO_DEMUXERS = 'mov,matroska,webm';

/** The box every picture output fits inside; small videos are not enlarged. */
const BOX = { width: 1920, height: 1080 } as const;
const THUMBNAIL = { width: 300, height: 300 } as const;
/** Same JPEG settings as the image processor's `resized` (poster) and `thumbnail`. */
const JPEG_POSTER = { quality: 85, progressive: true, mozjpeg: true } as const;
const JPEG_THUMBNAIL = { quality: 80, progressive: true, mozjpeg: true } as const;
/** Where the poster frame is taken; shorter clips use their middle. */
const POSTER_AT_SECONDS = 1;
/** At most 4 progress messages a second. */
const PROGRESS_INTERVAL_MS = 250;

/**
 * x264 `veryfast` at CRF 23 (x264's default quality): on this 2-core box a 10 s 720p clip takes
 * ~10 s with veryfast vs ~6 s with superfast, but superfast's file was twice as big (9.6 vs
 * 4.7 MB); medium costs ~2x veryfast's time for ~10-15% fewer bytes. Videos are encoded once and
 * downloaded many times, but a 2-core worker must also keep up: veryfast is the knee. The
 * maxrate/bufsize cap (capped CRF) keeps noisy or high-motion sources from ballooning and keeps
 * the stream playable over ordinary connections; typical content stays well under it.
 */
const X264 = ['-preset', 'veryfast', '-crf', '23', '-maxrate', '8M', '-bufsize', '16M', '-profile:v', 'high'] as const;

const FFPROBE = process.env.FFPROBE_PATH || 'ffprobe';

/** Errors that say "the machine is in trouble", not "the input is bad": thrown, so retried. */
const SYSTEM_TROUBLE =
  /No space left on device|Cannot allocate memory|Too many open files|Read-only file system|Input\/output error|Permission denied|No such file or directory|Resource temporarily unavailable|Disk quota exceeded/i;

// ---------------------------------------------------------------------------------------------
// ffprobe JSON (only what we read)

interface ProbeSideData {
  side_data_type?: string;
  rotation?: number;
}
interface ProbeStream {
  index: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  sample_aspect_ratio?: string;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  duration?: string;
  channels?: number;
  disposition?: Record<string, number>;
  tags?: Record<string, string>;
  side_data_list?: ProbeSideData[];
}
interface ProbeFormat {
  format_name?: string;
  duration?: string;
  bit_rate?: string;
  tags?: Record<string, string>;
}
interface Probe {
  streams: ProbeStream[];
  format: ProbeFormat;
}

/** What the job learnt about the input. */
export interface VideoMedia {
  [key: string]: unknown;
  /** Seconds (the container's duration, else the video stream's). */
  duration: number | null;
  /** As displayed: after rotation, and with non-square pixels (anamorphic video) made square. */
  width: number;
  height: number;
  /**
   * Degrees the stored picture is turned clockwise for display (0, 90, 180, 270): the legacy
   * `rotate` tag's convention. From the display matrix (whose angle, as ffprobe prints it, is
   * counter-clockwise: an upright iPhone portrait video shows -90 there and 90 here) or the tag.
   */
  rotation: number;
  videoCodec: string | null;
  audioCodec: string | null;
  /** Overall bit rate, bit/s. */
  bitrate: number | null;
  frameRate: number | null;
  hasAudio: boolean;
  /** ffprobe's demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2` or `matroska,webm`. */
  container: string | null;
  creationTime: string | null;
}

// ---------------------------------------------------------------------------------------------

class TimedOut extends Error {}

export async function videoJob(task: VideoTask): Promise<MediaOutcome> {
  const started = Date.now();
  const input = path.resolve(task.input);
  const outputDir = path.resolve(task.outputDir);
  const files = {
    frame: path.join(outputDir, 'poster-frame.png'),
    poster: path.join(outputDir, 'poster.jpg'),
    thumbnail: path.join(outputDir, 'thumbnail.jpg'),
    mp4: path.join(outputDir, 'video.mp4'),
  };
  const children = new Children();
  const words = (text: string) => ffmpegWords(text, [[input, 'input'], [outputDir, 'output']]);
  let expired = false;
  const timer =
    Number.isFinite(task.timeoutMs) && task.timeoutMs > 0
      ? setTimeout(() => {
          expired = true;
          void children.closeAndKill();
        }, Math.min(task.timeoutMs, 2 ** 31 - 1))
      : undefined;
  const checkTime = () => {
    if (expired) throw new TimedOut();
  };

  let outcome: MediaOutcome | undefined;
  try {
    await mkdir(outputDir, { recursive: true });
    if ((await stat(input)).size === 0) return (outcome = { ok: false, reason: 'not a readable video: the file is empty (0 bytes)' });

    // 1. Probe.
    const probed = await runFfprobe(children, input);
    checkTime();
    if (probed.code !== 0) {
      const reason = words(probed.stderr) || `ffprobe exited with ${describeExit(probed)}`;
      if (probed.signal !== null || SYSTEM_TROUBLE.test(probed.stderr)) throw new Error(`ffprobe failed: ${reason}`);
      return (outcome = { ok: false, reason: `not a readable video: ${reason}` });
    }
    const probe = parseProbe(probed.stdout);
    const video = probe.streams.find((s) => s.codec_type === 'video' && s.disposition?.attached_pic !== 1);
    if (!video) {
      const found = probe.streams.map((s) => `${s.codec_type ?? 'unknown'} ${s.codec_name ?? ''}`.trim());
      return (outcome = { ok: false, reason: `no video stream (found: ${found.length > 0 ? found.join(', ') : 'no streams at all'})` });
    }
    if (!video.width || !video.height) {
      return (outcome = { ok: false, reason: `the video stream (${video.codec_name ?? 'unknown codec'}) has no picture size` });
    }
    const audio = probe.streams.find((s) => s.codec_type === 'audio');
    const media = describeMedia(probe, video, audio);
    const duration = media.duration;

    // 2. Poster frame (fails fast on undecodable video). Timed on the video stream, which can
    //    be shorter than the container (a longer audio track).
    const videoDuration = numberOr(video.duration, duration);
    const at = videoDuration !== null && videoDuration > 0 ? Math.min(POSTER_AT_SECONDS, videoDuration / 2) : 0;
    let frame = await runFfmpeg(children, posterCommand(input, video.index, at, files.frame));
    checkTime();
    if (frame.error === undefined && !(await exists(files.frame)) && at > 0) {
      // The container promised more than there is: take the first frame instead.
      frame = await runFfmpeg(children, posterCommand(input, video.index, 0, files.frame));
      checkTime();
    }
    if (frame.error !== undefined) {
      const reason = words(frame.stderr) || frame.error.message;
      if (frame.unexpected || SYSTEM_TROUBLE.test(frame.stderr)) throw new Error(`ffmpeg failed on the poster frame: ${reason}`);
      return (outcome = { ok: false, reason: `cannot decode the video: ${reason}` });
    }
    if (!(await exists(files.frame))) {
      return (outcome = { ok: false, reason: `no video frame could be decoded${suffix(words(frame.stderr))}` });
    }

    // 3. The mp4.
    const progress = progressReporter(task, duration);
    const encoded = await runFfmpeg(children, mp4Command(input, video.index, audio, files.mp4), progress.line);
    checkTime();
    if (encoded.error !== undefined) {
      const reason = words(encoded.stderr) || encoded.error.message;
      if (encoded.unexpected || SYSTEM_TROUBLE.test(encoded.stderr)) throw new Error(`ffmpeg failed: ${reason}`);
      return (outcome = { ok: false, reason: `cannot transcode the video: ${reason}` });
    }
    // The mov demuxer reads what is there of a cut-off file and says "partial file": ffmpeg
    // still exits 0 with a shorter video. That is a truncated upload, not a video.
    const partial = encoded.stderr.split(/\r\n|\r|\n/).find((line) => /partial file/.test(line));
    if (partial !== undefined) return (outcome = { ok: false, reason: `the video is truncated: ${words(partial)}` });

    // 4. Read the outputs back.
    const out = await runFfprobe(children, files.mp4);
    checkTime();
    if (out.code !== 0) throw new Error(`ffprobe cannot read the mp4 just written: ${words(out.stderr) || describeExit(out)}`);
    const outVideo = parseProbe(out.stdout).streams.find((s) => s.codec_type === 'video');
    if (!outVideo?.width || !outVideo.height) {
      return (outcome = { ok: false, reason: `no video frame could be encoded${suffix(words(encoded.stderr))}` });
    }
    const outputs: ProducedOutput[] = [
      { name: 'mp4', path: files.mp4, contentType: 'video/mp4', size: (await stat(files.mp4)).size, width: outVideo.width, height: outVideo.height },
    ];
    await sharp(files.frame).jpeg(JPEG_POSTER).toFile(files.poster);
    await sharp(files.frame)
      .resize({ ...THUMBNAIL, fit: 'inside', withoutEnlargement: true })
      .jpeg(JPEG_THUMBNAIL)
      .toFile(files.thumbnail);
    await rm(files.frame, { force: true });
    outputs.push(await describeImage('poster', files.poster), await describeImage('thumbnail', files.thumbnail));
    checkTime();

    progress.done();
    return (outcome = { ok: true, outputs, media });
  } catch (err) {
    if (err instanceof TimedOut) {
      return (outcome = { ok: false, reason: `timed out after ${formatSeconds(Date.now() - started)} (limit ${formatSeconds(task.timeoutMs)})` });
    }
    throw err;
  } finally {
    clearTimeout(timer);
    await children.closeAndKill();
    if (outcome?.ok !== true) await Promise.allSettled(Object.values(files).map((file) => rm(file, { force: true })));
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

/** ffmpeg options for every input: only local files, only the accepted containers. */
function inputOptions(): string[] {
  return ['-hide_banner', '-nostdin', '-loglevel', 'error', '-protocol_whitelist', 'file', '-format_whitelist', VIDEO_DEMUXERS];
}

/**
 * The picture chain shared by the mp4 and the poster. ffmpeg has already turned the frames
 * upright (autorotate, on by default, inserts transpose/flip filters from the display matrix;
 * the encoder then gets an identity matrix, so nothing downstream rotates again). Then:
 * non-square pixels made square (a no-op for the usual SAR 1), shrink to fit inside 1920x1080
 * (never enlarge: the box is min(box, input)), both sides even (yuv420p needs it), and SAR 1
 * (rounding 607.5 up to 608 would otherwise leave a 1215:1216 SAR behind).
 */
function pictureChain(): string {
  return [
    "scale=w='iw*max(1,sar)':h='ih/min(1,sar)'",
    'setsar=1',
    `scale=w='min(${BOX.width},iw)':h='min(${BOX.height},ih)':force_original_aspect_ratio=decrease:force_divisible_by=2`,
    'setsar=1',
  ].join(',');
}

function posterCommand(input: string, videoIndex: number, atSeconds: number, target: string): FfmpegCommand {
  const command = ffmpeg(`file:${input}`, { stdoutLines: 100 });
  // Input seeking: jumps to the keyframe before `at`, decodes up to it (exact frame).
  if (atSeconds > 0) command.inputOptions(...inputOptions(), '-ss', atSeconds.toFixed(3));
  else command.inputOptions(...inputOptions());
  return command
    .output(`file:${target}`)
    .outputOptions('-map', `0:${videoIndex}`, '-vf', pictureChain(), '-frames:v', '1', '-c:v', 'png', '-compression_level', '1', '-f', 'image2', '-update', '1', '-map_metadata', '-1');
}

function mp4Command(input: string, videoIndex: number, audio: ProbeStream | undefined, target: string): FfmpegCommand {
  const audioOptions =
    audio === undefined
      ? []
      : ['-map', `0:${audio.index}`, '-c:a', 'aac', '-b:a', '128k', ...((audio.channels ?? 0) > 2 ? ['-ac', '2'] : [])];
  return ffmpeg(`file:${input}`, { stdoutLines: 100 })
    .inputOptions(...inputOptions())
    .output(`file:${target}`)
    .outputOptions(
      '-stats', // progress lines on stderr, even at -loglevel error (every 0.5 s)
      '-map', `0:${videoIndex}`,
      '-vf', pictureChain(),
      '-c:v', 'libx264',
      ...X264,
      '-pix_fmt', 'yuv420p', // 8-bit 4:2:0: what every browser and phone decodes
      ...audioOptions,
      // No stream given means no stream written: a silent video gets no audio track. No
      // subtitles, data tracks, chapters or metadata (phones put GPS coordinates in there).
      '-map_metadata', '-1',
      '-map_chapters', '-1',
      '-movflags', '+faststart', // moov before mdat: playback starts before the download ends
      '-max_muxing_queue_size', '1024', // sparse/late audio in phone videos would abort the mux
      '-f', 'mp4',
    );
}

// ---------------------------------------------------------------------------------------------
// Running children

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
}

function runFfprobe(children: Children, file: string): Promise<Exit> {
  const args = [
    ...['-hide_banner', '-v', 'error', '-protocol_whitelist', 'file', '-format_whitelist', VIDEO_DEMUXERS],
    ...['-print_format', 'json', '-show_format', '-show_streams', '-i', `file:${file}`],
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(FFPROBE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject); // cannot spawn ffprobe: ours to fix, so thrown
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    children.adopt(child);
  });
}

interface FfmpegResult {
  /** Set when ffmpeg failed (fluent-ffmpeg's error). */
  error?: Error;
  /** ffmpeg could not be started, or it died of a signal we did not send. */
  unexpected: boolean;
  /** ffmpeg's stderr without the progress lines (the first 200 lines). */
  stderr: string;
}

/** The child fluent-ffmpeg spawned; the property exists but is not in its type declarations. */
type WithProcess = { ffmpegProc?: ChildProcess };

function runFfmpeg(children: Children, command: FfmpegCommand, onLine?: (line: string) => void): Promise<FfmpegResult> {
  return new Promise((resolve) => {
    const lines: string[] = [];
    let spawned = false;
    command.on('start', () => {
      spawned = true;
      const child = (command as unknown as WithProcess).ffmpegProc;
      if (child) children.adopt(child);
    });
    command.on('stderr', (line: string) => {
      onLine?.(line);
      // Keep what explains a failure, not the progress lines; a damaged file can log the same
      // decode error thousands of times, so only the first lines are kept.
      if (!STATS_LINE.test(line) && lines.length < 200) lines.push(line);
    });
    command.on('error', (error: Error) => {
      const killedByUs = children.closed;
      resolve({ error, unexpected: !spawned || (/killed with signal/.test(error.message) && !killedByUs), stderr: lines.join('\n') });
    });
    command.on('end', () => resolve({ unexpected: false, stderr: lines.join('\n') }));
    command.run();
  });
}

/**
 * The children of one job. `closeAndKill` (timeout, end of job) SIGKILLs whatever still runs
 * and waits until Node has reaped it; a child adopted after that is killed at once.
 */
class Children {
  private readonly running = new Map<ChildProcess, Promise<void>>();
  closed = false;

  adopt(child: ChildProcess): void {
    if (child.pid === undefined) return; // not spawned: its 'error' event reports why
    const release = guard(child.pid);
    const exited = new Promise<void>((resolve) => {
      const done = () => {
        release();
        this.running.delete(child);
        resolve();
      };
      if (child.exitCode !== null || child.signalCode !== null) done();
      else child.once('exit', done);
    });
    this.running.set(child, exited);
    if (this.closed) child.kill('SIGKILL');
  }

  async closeAndKill(): Promise<void> {
    this.closed = true;
    for (const child of this.running.keys()) child.kill('SIGKILL');
    await Promise.all(this.running.values());
  }
}

/**
 * A watchdog for one child: `sh` blocks reading a pipe from this thread. Released normally, it
 * reads a line and exits; if the pipe closes first (this thread terminated, or the process
 * died), `read` fails and it SIGKILLs the child. The pipe is close-on-exec (libuv), so no other
 * child holds it open. Without /bin/sh the job still runs, just without this safety net.
 */
const GUARD_SCRIPT = 'read -r _ || kill -9 "$1" 2>/dev/null';

function guard(pid: number): () => void {
  let guardian: ChildProcess;
  try {
    guardian = spawn('/bin/sh', ['-c', GUARD_SCRIPT, 'videojob-guard', String(pid)], { stdio: ['pipe', 'ignore', 'ignore'] });
  } catch {
    return () => undefined;
  }
  guardian.on('error', () => undefined);
  guardian.stdin?.on('error', () => undefined);
  return () => {
    guardian.stdin?.end('\n');
  };
}

// ---------------------------------------------------------------------------------------------
// Progress

function progressReporter(task: VideoTask, duration: number | null): { line: (line: string) => void; done: () => void } {
  const port = task.progress;
  let last = -1;
  let lastAt = 0;
  const post = (percent: number) => {
    last = percent;
    lastAt = Date.now();
    port?.postMessage({ percent });
  };
  return {
    line: (line) => {
      if (!port || duration === null || duration <= 0) return;
      const time = /time=\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)/.exec(line);
      if (!time) return;
      const seconds = Number(time[1]) * 3600 + Number(time[2]) * 60 + Number(time[3]);
      const percent = Math.min(99.9, Math.round((seconds / duration) * 1000) / 10);
      if (percent > last && Date.now() - lastAt >= PROGRESS_INTERVAL_MS) post(percent);
    },
    done: () => {
      if (port) post(100);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Metadata

function parseProbe(json: string): Probe {
  const parsed = JSON.parse(json) as Partial<Probe>;
  return { streams: parsed.streams ?? [], format: parsed.format ?? {} };
}

function describeMedia(probe: Probe, video: ProbeStream, audio: ProbeStream | undefined): VideoMedia {
  const rotation = rotationOf(video);
  const sar = ratio(video.sample_aspect_ratio);
  let width = video.width ?? 0;
  let height = video.height ?? 0;
  if (sar !== null && sar > 0 && sar !== 1) {
    if (sar > 1) width = Math.round(width * sar);
    else height = Math.round(height / sar);
  }
  if (rotation === 90 || rotation === 270) [width, height] = [height, width];
  const frameRate = ratio(video.avg_frame_rate) || ratio(video.r_frame_rate);
  return {
    duration: numberOr(probe.format.duration, numberOr(video.duration, null)),
    width,
    height,
    rotation,
    videoCodec: video.codec_name ?? null,
    audioCodec: audio?.codec_name ?? null,
    bitrate: numberOr(probe.format.bit_rate, null),
    frameRate: frameRate ? Math.round(frameRate * 1000) / 1000 : null,
    hasAudio: audio !== undefined,
    container: probe.format.format_name ?? null,
    creationTime: probe.format.tags?.creation_time ?? video.tags?.creation_time ?? null,
  };
}

/** Clockwise degrees, 0/90/180/270 (see `VideoMedia.rotation`). */
export function rotationOf(stream: Pick<ProbeStream, 'side_data_list' | 'tags'>): number {
  const matrix = stream.side_data_list?.find((d) => d.side_data_type === 'Display Matrix' && typeof d.rotation === 'number');
  const clockwise = matrix?.rotation !== undefined ? -matrix.rotation : Number(stream.tags?.rotate ?? 0);
  if (!Number.isFinite(clockwise)) return 0;
  return (((Math.round(clockwise / 90) * 90) % 360) + 360) % 360;
}

function ratio(text: string | undefined): number | null {
  if (!text) return null;
  const [num, den] = text.split(/[/:]/).map(Number);
  if (num === undefined || !Number.isFinite(num)) return null;
  if (den === undefined) return num;
  return Number.isFinite(den) && den !== 0 ? num / den : null;
}

function numberOr<T>(text: string | undefined, fallback: T): number | T {
  if (text === undefined || text === 'N/A') return fallback;
  const value = Number(text);
  return Number.isFinite(value) ? value : fallback;
}

async function describeImage(name: OutputName, file: string): Promise<ProducedOutput> {
  const [{ size }, meta] = await Promise.all([stat(file), sharp(file).metadata()]);
  return { name, path: file, contentType: 'image/jpeg', size, width: meta.width, height: meta.height };
}

// ---------------------------------------------------------------------------------------------
// Words

/** ffmpeg's `-stats` progress lines. */
const STATS_LINE = /^\s*(frame|size)=/;

/**
 * ffmpeg's/ffprobe's own error lines, trimmed: no progress lines, no `[mov,mp4,… @ 0x55…]`
 * prefixes, server paths replaced, repeats dropped, at most 4 lines and 400 characters.
 */
export function ffmpegWords(stderr: string, replacements: Array<[string, string]> = []): string {
  const seen = new Set<string>();
  for (let line of stderr.split(/\r\n|\r|\n/)) {
    line = line.trim();
    if (line === '' || STATS_LINE.test(line) || /^Conversion failed!?$/.test(line)) continue;
    line = line.replace(/^\[[^\]]* @ 0x[0-9a-f]+\]\s*/i, '');
    for (const [from, to] of replacements) line = line.split(`file:${from}`).join(to).split(from).join(to);
    seen.add(line);
    if (seen.size >= 4) break;
  }
  const text = [...seen].join('; ');
  return text.length > 400 ? `${text.slice(0, 399)}…` : text;
}

function suffix(text: string): string {
  return text ? `: ${text}` : '';
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).size > 0;
  } catch {
    return false;
  }
}
