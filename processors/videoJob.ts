import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import ffmpeg from 'fluent-ffmpeg';
import type { FfmpegCommand } from 'fluent-ffmpeg';
import sharp from 'sharp';
import { JobControl, Stopped, SYSTEM_TROUBLE } from './childProcesses.ts';
import { ffmpegWords, runFfmpeg } from './ffmpeg.ts';
import { describeExit, describeMedia, numberOr, parseProbe, runFfprobe, VIDEO_DEMUXERS, type ProbeStream } from './ffprobe.ts';
import { AAC, JPEG_RESIZED, JPEG_THUMBNAIL, MP4_MAXRATE, pictureBox, rateCap, THUMBNAIL_BOX, X264, X264_LOWER_RUNG_PARAMS, type Size } from './encoderPresets.ts';
import {
  hlsMuxerOptions, initOf, keyframesEvery, playlistOf, renditionsFor, rungScale, writeMasterPlaylist,
  type HlsSettings, type Rendition, type RenditionFacts,
} from './hlsLadder.ts';
import type { MediaOutcome, OutputName, ProducedOutput, VideoTask } from './mediaTasks.ts';
import { planStoryboard, SPRITE_FILE, STORYBOARD_FILE, STORYBOARD_MIN_SECONDS, storyboardFilter, writeStoryboardVtt, type StoryboardPlan } from './storyboard.ts';

/**
 * Video processing, run on a worker thread (piscina) by the job runner; ffmpeg and ffprobe run
 * as child processes of that thread.
 *
 *   1. ffprobe (JSON) → `media` metadata; no readable video stream → `{ ok: false }`.
 *   2. One frame at 1 s (the middle of shorter clips) → PNG → sharp → `poster` + `thumbnail`.
 *      Done first because it is cheap next to the encode and proves a frame can be decoded at all before
 *      the expensive encode starts.
 *   3. One ffmpeg run (fluent-ffmpeg), one decode: the picture chain (upright, fits the picture box
 *      of 1920x1080, or 1080x1920 for a portrait picture, HDR tone-mapped to SDR, BT.709) is split
 *      into every encode: `mp4` (H.264 + AAC 128k, +faststart); with `task.hls` the ladder's
 *      renditions (hlsLadder.ts), the top one being the mp4's own encode written a second time
 *      through the tee muxer as HLS segments; for clips over 10 s with `task.storyboard` the
 *      storyboard's sprite (storyboard.ts).
 *   4. ffprobe the mp4 (and each rendition's init segment) → real sizes, profile, level; the
 *      master playlist; the sprite as JPEG and its WebVTT.
 *
 * Outcomes: the input is bad (unreadable, truncated, no video stream, nothing decodable) →
 * `{ ok: false, reason }` with ffmpeg's/ffprobe's own words (server paths replaced by `input` /
 * `output`); the job's time budget (`task.timeoutMs`, for all steps together) runs out → ffmpeg
 * is SIGKILLed, reaped, and `{ ok: false, reason: 'timed out after …' }` (`'cancelled'` when the
 * runner cancels it through `task.port`); anything else (ffmpeg
 * missing, disk full, out of memory, killed by someone else) is thrown so the runner retries.
 * On any failure no output file is left behind.
 *
 * Children are never left running, not even when the worker thread is terminated or the whole
 * process dies: see `childProcesses.ts`.
 */

/** Where the poster frame is taken; shorter clips use their middle. */
const POSTER_AT_SECONDS = 1;
/** At most 4 progress messages a second. */
const PROGRESS_INTERVAL_MS = 250;

// ---------------------------------------------------------------------------------------------

export async function videoJob(task: VideoTask): Promise<MediaOutcome> {
  const input = path.resolve(task.input);
  const outputDir = path.resolve(task.outputDir);
  const files = {
    frame: path.join(outputDir, 'poster-frame.png'),
    poster: path.join(outputDir, 'poster.jpg'),
    thumbnail: path.join(outputDir, 'thumbnail.jpg'),
    mp4: path.join(outputDir, 'video.mp4'),
    hls: path.join(outputDir, 'hls'),
    storyboard: path.join(outputDir, 'storyboard'),
    spriteFrame: path.join(outputDir, 'sprite-frames.png'),
  };
  const control = new JobControl(task.timeoutMs, task.port);
  const { children } = control;
  const checkTime = () => control.check();
  const words = (text: string) => ffmpegWords(text, [[input, 'input'], [outputDir, 'output']]);
  const probeVideo = async (file: string, what: string): Promise<ProbeStream | undefined> => {
    const out = await runFfprobe(children, file);
    checkTime();
    if (out.code !== 0) throw new Error(`ffprobe cannot read ${what}: ${words(out.stderr) || describeExit(out)}`);
    return parseProbe(out.stdout).streams.find((s) => s.codec_type === 'video');
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
    if (video.width * video.height > task.maxPixels) {
      return (outcome = { ok: false, reason: `video frames are ${video.width} x ${video.height} pixels, over the limit of ${task.maxPixels}` });
    }
    const audio = probe.streams.find((s) => s.codec_type === 'audio');
    const media = describeMedia(probe, video, audio);
    const duration = media.duration;
    const picture = pictureChain(pictureBox(media), video, media.hdr !== null);

    // 2. Poster frame (fails fast on undecodable video). Timed on the video stream, which can
    //    be shorter than the container (a longer audio track).
    const videoDuration = numberOr(video.duration, duration);
    const at = videoDuration !== null && videoDuration > 0 ? Math.min(POSTER_AT_SECONDS, videoDuration / 2) : 0;
    let frame = await runFfmpeg(children, posterCommand(input, video.index, picture, at, files.frame));
    checkTime();
    if (frame.error === undefined && !(await exists(files.frame)) && at > 0) {
      // The container promised more than there is: take the first frame instead.
      frame = await runFfmpeg(children, posterCommand(input, video.index, picture, 0, files.frame));
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

    // 3. One decode, every encode.
    const box = pictureBox(media);
    const renditions = task.hls ? renditionsFor(media, box, task.hls.ladder) : [];
    const storyboardSeconds = videoDuration ?? 0;
    const storyboard = task.storyboard && storyboardSeconds > STORYBOARD_MIN_SECONDS ? planStoryboard(storyboardSeconds, media) : undefined;
    if (renditions.length > 0) await mkdir(files.hls);
    const progress = progressReporter(task, duration);
    const plan: EncodePlan = { input, video, picture, audio, portrait: box.height > box.width, hls: task.hls, renditions, storyboard, files };
    const encoded = await runFfmpeg(children, encodeCommand(plan), progress.line);
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
    const outVideo = await probeVideo(files.mp4, 'the mp4 just written');
    if (!outVideo?.width || !outVideo.height) {
      return (outcome = { ok: false, reason: `no video frame could be encoded${suffix(words(encoded.stderr))}` });
    }
    const outputs: ProducedOutput[] = [
      { name: 'mp4', path: files.mp4, contentType: 'video/mp4', size: (await stat(files.mp4)).size, width: outVideo.width, height: outVideo.height },
    ];
    if (task.hls && renditions.length > 0) {
      const facts: RenditionFacts[] = [];
      for (const rendition of renditions) {
        const stream = rendition.top ? outVideo : await probeVideo(initOf(files.hls, rendition), `rendition ${rendition.name}`);
        facts.push({ rendition, width: stream?.width ?? 0, height: stream?.height ?? 0, hasAudio: audio !== undefined, frameRate: media.frameRate });
      }
      const master = await writeMasterPlaylist(files.hls, facts);
      outputs.push({
        name: 'hls', path: files.hls, contentType: HLS_PLAYLIST_TYPE, size: master.size, width: outVideo.width, height: outVideo.height,
        files: master.files, details: { renditions: facts.map((f) => ({ name: f.rendition.name, width: f.width, height: f.height, bytes: master.bytesByRendition[f.rendition.name] })) },
      });
    }
    if (storyboard) outputs.push(await storyboardOutput(files, storyboard, storyboardSeconds));
    checkTime();
    await sharp(files.frame).jpeg(JPEG_RESIZED).toFile(files.poster);
    await sharp(files.frame)
      .resize({ ...THUMBNAIL_BOX, fit: 'inside', withoutEnlargement: true })
      .jpeg(JPEG_THUMBNAIL)
      .toFile(files.thumbnail);
    await rm(files.frame, { force: true });
    outputs.push(await describeImage('poster', files.poster), await describeImage('thumbnail', files.thumbnail));
    checkTime();

    progress.done();
    return (outcome = { ok: true, outputs, media });
  } catch (err) {
    if (err instanceof Stopped) return (outcome = { ok: false, reason: control.reason() });
    throw err;
  } finally {
    await control.release();
    await rm(files.spriteFrame, { force: true });
    if (outcome?.ok !== true) await Promise.allSettled(Object.values(files).map((file) => rm(file, { force: true, recursive: true })));
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

/** ffmpeg options for every input: only local files, only the accepted containers. */
function inputOptions(): string[] {
  return ['-hide_banner', '-nostdin', '-loglevel', 'error', '-protocol_whitelist', 'file', '-format_whitelist', VIDEO_DEMUXERS];
}

/** SD matrices: their pixels are converted to BT.709's matrix, as the output is tagged. */
const SD_MATRICES = new Set(['smpte170m', 'bt470bg']);

/**
 * The picture chain shared by the mp4 and the poster. ffmpeg has already turned the frames
 * upright (autorotate, on by default, inserts transpose/flip filters from the display matrix;
 * the encoder then gets an identity matrix, so nothing downstream rotates again). Then:
 * non-square pixels made square (a no-op for the usual SAR 1), shrink to fit inside `box`
 * (never enlarge: the box is min(box, input)), both sides even (yuv420p needs it), and SAR 1
 * (rounding 607.5 up to 608 would otherwise leave a 1215:1216 SAR behind). Last, the colours:
 * HDR (HLG or PQ, BT.2020) is tone-mapped to SDR BT.709 after the shrink (the float maths costs
 * per pixel): linear light, BT.709 primaries, Hable's curve without desaturation, BT.709
 * transfer and matrix, limited range. SD matrices are converted; the rest is BT.709 already
 * (or untagged, which players take as BT.709 at these sizes).
 */
function pictureChain(box: Size, video: ProbeStream, hdr: boolean): string {
  const sd = !hdr && SD_MATRICES.has(video.color_space ?? '');
  const filters = [
    "scale=w='iw*max(1,sar)':h='ih/min(1,sar)'",
    'setsar=1',
    `scale=w='min(${box.width},iw)':h='min(${box.height},ih)':force_original_aspect_ratio=decrease:force_divisible_by=2${sd ? ':in_color_matrix=bt601:out_color_matrix=bt709' : ''}`,
    'setsar=1',
  ];
  if (hdr) {
    // zscale needs the input's primaries and matrix; phones tag them, BT.2020 is the HDR default.
    const pin = video.color_primaries && video.color_primaries !== 'unknown' ? video.color_primaries : 'bt2020';
    const min = video.color_space && video.color_space !== 'unknown' ? video.color_space : 'bt2020nc';
    filters.push(
      `zscale=pin=${pin}:min=${min}:t=linear:npl=100`,
      'format=gbrpf32le',
      'zscale=p=bt709',
      'tonemap=tonemap=hable:desat=0',
      'zscale=t=bt709:m=bt709:r=tv',
    );
  }
  filters.push('format=yuv420p'); // 8-bit 4:2:0: what every browser and phone decodes
  return filters.join(',');
}

/** The colour properties written into the mp4 (and so into every player's decision). */
const BT709_TAGS = ['-color_primaries', 'bt709', '-color_trc', 'bt709', '-colorspace', 'bt709', '-color_range', 'tv'] as const;

function posterCommand(input: string, videoIndex: number, picture: string, atSeconds: number, target: string): FfmpegCommand {
  const command = ffmpeg(`file:${input}`, { stdoutLines: 100 });
  // Input seeking: jumps to the keyframe before `at`, decodes up to it (exact frame).
  if (atSeconds > 0) command.inputOptions(...inputOptions(), '-ss', atSeconds.toFixed(3));
  else command.inputOptions(...inputOptions());
  return command
    .output(`file:${target}`)
    // The picture is BT.709 now, which swscale's own YUV → RGB (BT.601 unless the frame says
    // otherwise, and swscale's scale does not say) would misread: a poster greener than the video.
    .outputOptions('-map', `0:${videoIndex}`, '-vf', `${picture},scale=in_color_matrix=bt709:in_range=tv:out_range=pc,format=rgb24`, '-frames:v', '1', '-c:v', 'png', '-compression_level', '1', '-f', 'image2', '-update', '1', '-map_metadata', '-1');
}

/** The media type of HLS playlists (RFC 8216). */
const HLS_PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';

interface EncodePlan {
  input: string;
  video: ProbeStream;
  picture: string;
  audio: ProbeStream | undefined;
  portrait: boolean;
  hls: HlsSettings | undefined;
  /** Top first; empty without HLS. */
  renditions: Rendition[];
  storyboard: StoryboardPlan | undefined;
  files: { mp4: string; hls: string; spriteFrame: string };
}

/**
 * The one ffmpeg run: the picture chain once, `split` into the top encode (the mp4, and with HLS
 * the top rendition: the same packets through the tee muxer), the lower renditions and the
 * storyboard's sprite. Each lower rendition is scaled from the one above it, not from the top
 * picture: every step reads fewer pixels (docs/benchmarks.md), and a downscale of a downscale
 * loses nothing visible.
 */
function encodeCommand(plan: EncodePlan): FfmpegCommand {
  const { renditions, storyboard, hls, files } = plan;
  const lower = renditions.filter((r) => !r.top);
  const branches = ['top', ...(lower.length > 0 ? ['cascade_top'] : []), ...(storyboard ? ['split_storyboard'] : [])];
  const graph = [`[0:${plan.video.index}]${plan.picture},split=${branches.length}${branches.map((b) => `[${b}]`).join('')}`];
  lower.forEach((rendition, i) => {
    const from = i === 0 ? 'cascade_top' : `cascade_${lower[i - 1]!.name}`;
    const to = i < lower.length - 1 ? `,split=2[${rendition.name}][cascade_${rendition.name}]` : `[${rendition.name}]`;
    graph.push(`[${from}]${rungScale(rendition, plan.portrait)}${to}`);
  });
  if (storyboard) graph.push(`[split_storyboard]${storyboardFilter(storyboard)}[sprite]`);

  const audioOptions = plan.audio === undefined ? [] : ['-map', `0:${plan.audio.index}`, ...AAC, ...((plan.audio.channels ?? 0) > 2 ? ['-ac', '2'] : [])];
  const keyframes = hls ? ['-force_key_frames', keyframesEvery(hls)] : [];
  // Options of every video encode; `video` maps the encodes (one per rendition) and sets each one's cap.
  const encode = (video: string[]) => [
    ...video,
    '-c:v', 'libx264',
    ...X264,
    ...BT709_TAGS,
    // Every frame at its own time: 60 fps stays 60 fps and a variable-frame-rate phone clip
    // keeps its timing (the mp4 muxer's default would make it constant-rate, duplicating and
    // dropping frames to fit).
    '-fps_mode', 'vfr',
    ...keyframes,
    ...audioOptions,
    // No stream given means no stream written: a silent video gets no audio track. No
    // subtitles, data tracks, chapters or metadata (phones put GPS coordinates in there).
    '-map_metadata', '-1',
    '-map_chapters', '-1',
    '-max_muxing_queue_size', '1024', // sparse/late audio in phone videos would abort the mux
  ];

  const command = ffmpeg(`file:${plan.input}`, { stdoutLines: 100 }).inputOptions(...inputOptions()).complexFilter(graph.join(';'));
  const top = renditions[0];
  if (hls && top) {
    // One output through the tee muxer: every rendition's encode (video stream i = rendition i)
    // and one AAC encode that every slave shares (`select`), so the audio is encoded once.
    // moov before mdat in the mp4: playback starts before the download ends. The tee muxer
    // cannot ask each muxer what it needs: global headers, as all want them.
    // `select` is quoted, escaped once more for the tee muxer's own split of its slaves.
    const select = (i: number) => `select=\\'v:${i},a\\'`;
    const slaves = [`[f=mp4:movflags=+faststart:${select(0)}]${teeEscape(files.mp4)}`];
    renditions.forEach((rendition, i) => {
      const options = hlsMuxerOptions(files.hls, rendition, hls).map(([key, value]) => `${key}=${teeEscape(value)}`).join(':');
      slaves.push(`[f=hls:${options}:${select(i)}]${teeEscape(playlistOf(files.hls, rendition))}`);
    });
    const video = renditions.flatMap((rendition, i) => [
      '-map', `[${rendition.top ? 'top' : rendition.name}]`, ...rateCap(rendition.maxrate, `:v:${i}`),
      // The top one is the mp4, encoded as without HLS. The lower ones run on one thread each: next to the
      // top encode's frame threads, more only add synchronisation (CPU time, docs/benchmarks.md).
      ...(rendition.top ? [] : [`-x264-params:v:${i}`, X264_LOWER_RUNG_PARAMS, `-threads:v:${i}`, '1']),
    ]);
    command.output(slaves.join('|')).outputOptions('-stats', ...encode(video), '-flags', '+global_header', '-f', 'tee');
  } else {
    command.output(`file:${files.mp4}`).outputOptions('-stats', ...encode(['-map', '[top]', ...rateCap(MP4_MAXRATE)]), '-movflags', '+faststart', '-f', 'mp4');
  }
  if (storyboard) {
    command.output(`file:${files.spriteFrame}`)
      .outputOptions('-map', '[sprite]', '-c:v', 'png', '-compression_level', '1', '-f', 'image2', '-update', '1', '-map_metadata', '-1');
  }
  return command;
}

/** A tee muxer's special characters, escaped in a file name or option value. */
function teeEscape(text: string): string {
  return text.replace(/[\\:|[\]]/g, (c) => `\\${c}`);
}

// ---------------------------------------------------------------------------------------------
// Progress

function progressReporter(task: VideoTask, duration: number | null): { line: (line: string) => void; done: () => void } {
  const port = task.port;
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
// Helpers

/** The sprite (JPEG, as the thumbnail is encoded) and its WebVTT, in their own folder. */
async function storyboardOutput(files: { storyboard: string; spriteFrame: string }, plan: StoryboardPlan, seconds: number): Promise<ProducedOutput> {
  await mkdir(files.storyboard);
  const sprite = path.join(files.storyboard, SPRITE_FILE);
  const vtt = path.join(files.storyboard, STORYBOARD_FILE);
  const info = await sharp(files.spriteFrame).jpeg(JPEG_THUMBNAIL).toFile(sprite);
  await writeStoryboardVtt(vtt, plan, seconds);
  return {
    name: 'storyboard', path: files.storyboard, contentType: 'text/vtt', size: info.size + (await stat(vtt)).size,
    width: info.width, height: info.height, files: [STORYBOARD_FILE, SPRITE_FILE],
  };
}

async function describeImage(name: OutputName, file: string): Promise<ProducedOutput> {
  const [{ size }, meta] = await Promise.all([stat(file), sharp(file).metadata()]);
  return { name, path: file, contentType: 'image/jpeg', size, width: meta.width, height: meta.height };
}

function suffix(text: string): string {
  return text ? `: ${text}` : '';
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).size > 0;
  } catch {
    return false;
  }
}
