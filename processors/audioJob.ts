import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Stopped, SYSTEM_TROUBLE } from './childProcesses.ts';
import { controlledJob } from './controlledJob.ts';
import { AAC } from './encoderPresets.ts';
import { ffmpegWords } from './ffmpeg.ts';
import { AUDIO_DEMUXERS, describeExit, numberOr, parseProbe, runFfprobe, type ProbeStream } from './ffprobe.ts';
import type { AudioTask, MediaOutcome, ProducedOutput } from './mediaTasks.ts';
import { runChild, type Exit } from './runChild.ts';
import { WaveformPeaks } from './waveformPeaks.ts';

/**
 * Audio processing (voice notes, music), run on a worker thread (piscina) by the job runner;
 * ffprobe and ffmpeg run as reaped child processes of that thread.
 *
 *   1. ffprobe → the audio stream (cover art and any picture are ignored); none → `{ ok: false }`.
 *   2. ffmpeg's `loudnorm`, first pass: measures the loudness. Silence cannot be normalised.
 *   3. Second pass, one decode: `loudnorm` with the measures (linear: one gain for the whole file)
 *      → `audio` (AAC 128k in M4A, +faststart), and the same normalised sound, mono at a low rate,
 *      on stdout → the `waveform` peaks, which also give the duration (a recorded WebM has none
 *      in its header).
 *
 * Outcomes as for a video (`videoJob.ts`): a bad input → `{ ok: false, reason }` in ffmpeg's own
 * words; out of time or cancelled through `task.port` → children killed and reaped; trouble of
 * the machine → thrown, so retried. On any failure no output file is left behind.
 */

const FFMPEG = process.env.FFMPEG_PATH || 'ffmpeg';

/** True peak (dBTP) and loudness range (LU) `loudnorm` aims at: the peak leaves room for AAC's overshoot; the range is its default. */
const TRUE_PEAK = -1.5;
const LOUDNESS_RANGE = 11;
/** Below this (LUFS) `loudnorm` measures nothing: EBU R128's absolute gate. */
const SILENCE = -70;
/** The waveform is drawn from the sound at this rate: enough for peaks a screen can show. */
const WAVEFORM_RATE = 8000;
const OUTPUT_RATE = 48000;

export async function audioJob(task: AudioTask): Promise<MediaOutcome> {
  const input = path.resolve(task.input);
  const outputDir = path.resolve(task.outputDir);
  const files = { audio: path.join(outputDir, 'audio.m4a'), waveform: path.join(outputDir, 'waveform.json') };
  return controlledJob(task, files, async (control) => {
    const { children } = control;
    const words = (text: string) => ffmpegWords(text, [[input, 'input'], [outputDir, 'output']]);
    /** A bad input is the upload's fault; anything else (a signal, a full disk) is retried. */
    const judge = (exit: Exit, what: string): MediaOutcome => {
      const reason = words(errorLines(exit.stderr)) || `ffmpeg exited with ${describeExit(exit)}`;
      if (control.stopped) throw new Stopped();
      if (exit.signal !== null || SYSTEM_TROUBLE.test(exit.stderr)) throw new Error(`ffmpeg failed: ${reason}`);
      return { ok: false, reason: `${what}: ${reason}` };
    };

    await mkdir(outputDir, { recursive: true });
    if ((await stat(input)).size === 0) return { ok: false, reason: 'not a readable audio file: the file is empty (0 bytes)' };

    // 1. Probe.
    const probed = await runFfprobe(children, input, AUDIO_DEMUXERS);
    control.check();
    if (probed.code !== 0) {
      const reason = words(probed.stderr) || `ffprobe exited with ${describeExit(probed)}`;
      if (probed.signal !== null || SYSTEM_TROUBLE.test(probed.stderr)) throw new Error(`ffprobe failed: ${reason}`);
      return { ok: false, reason: `not a readable audio file: ${reason}` };
    }
    const probe = parseProbe(probed.stdout);
    const audio = probe.streams.find((s) => s.codec_type === 'audio');
    if (!audio) {
      const video = probe.streams.some((s) => s.codec_type === 'video' && s.disposition?.attached_pic !== 1);
      const found = probe.streams.map(describeStream).join(', ') || 'no streams at all';
      return { ok: false, reason: `${video ? 'a video without sound' : 'no sound'}: the file has no audio stream (found: ${found})` };
    }

    // 2. Measure.
    const measuring = await runChild(children, FFMPEG, [
      ...inputOptions('info', input),
      ...['-map', `0:${audio.index}`, '-af', `${loudnorm(task.loudness)}:print_format=json`, '-f', 'null', '-'],
    ]);
    control.check();
    if (measuring.code !== 0) return judge(measuring, 'cannot decode the audio');
    const measured = loudnormMeasures(measuring.stderr);
    if (!measured) throw new Error(`ffmpeg's loudnorm printed no measures: ${words(measuring.stderr)}`);
    if (!(Number(measured.input_i) > SILENCE)) {
      return { ok: false, reason: `the audio is silent (loudness ${measured.input_i} LUFS, below ${SILENCE}): nothing to hear or normalise` };
    }

    // 3. Normalise, encode and draw, from one decode.
    const peaks = new WaveformPeaks(task.waveformPoints);
    const linear = [
      `measured_I=${measured.input_i}`, `measured_TP=${measured.input_tp}`, `measured_LRA=${measured.input_lra}`,
      `measured_thresh=${measured.input_thresh}`, `offset=${measured.target_offset}`, 'linear=true',
    ].join(':');
    // Mono stays mono (a voice note); anything with more channels becomes stereo.
    const layout = audio.channels === 1 ? 'mono' : 'stereo';
    const encoded = await runChild(
      children,
      FFMPEG,
      [
        ...inputOptions('error', input),
        '-filter_complex',
        `[0:${audio.index}]${loudnorm(task.loudness)}:${linear},aresample=${OUTPUT_RATE},aformat=sample_fmts=fltp:channel_layouts=${layout},asplit=2[out][draw];` +
          `[draw]aresample=${WAVEFORM_RATE},aformat=sample_fmts=flt:channel_layouts=mono[peaks]`,
        ...['-map', '[out]', ...AAC, '-map_metadata', '-1', '-map_chapters', '-1', '-movflags', '+faststart', '-f', 'mp4', `file:${files.audio}`],
        ...['-map', '[peaks]', '-c:a', 'pcm_f32le', '-f', 'f32le', 'pipe:1'],
      ],
      (chunk) => peaks.push(chunk),
    );
    control.check();
    if (encoded.code !== 0) return judge(encoded, 'cannot encode the audio');
    if (peaks.samples === 0) return { ok: false, reason: `no audio could be decoded${suffix(words(errorLines(encoded.stderr)))}` };

    const duration = Math.round((peaks.samples / WAVEFORM_RATE) * 1000) / 1000;
    const pairs = peaks.finish();
    // audiowaveform's JSON (BBC), as peaks.js and wavesurfer.js read it: 8-bit min/max pairs.
    const waveform = {
      version: 2,
      channels: 1,
      sample_rate: WAVEFORM_RATE,
      samples_per_pixel: Math.max(1, Math.round(peaks.samples / Math.max(1, pairs.length))),
      bits: 8,
      length: pairs.length,
      data: pairs.flatMap(([min, max]) => [toByte(min), toByte(max)]),
    };
    await writeFile(files.waveform, JSON.stringify(waveform));
    const outputs: ProducedOutput[] = [
      { name: 'audio', path: files.audio, contentType: 'audio/mp4', size: (await stat(files.audio)).size, width: null, height: null },
      { name: 'waveform', path: files.waveform, contentType: 'application/json', size: (await stat(files.waveform)).size, width: null, height: null },
    ];
    const media = {
      duration,
      audioCodec: audio.codec_name ?? null,
      sampleRate: numberOr(audio.sample_rate, null),
      channels: audio.channels ?? null,
      bitrate: numberOr(probe.format.bit_rate, null),
      container: probe.format.format_name ?? null,
      // The header's own duration: absent in a recorded WebM (the duration above is decoded).
      declaredDuration: numberOr(probe.format.duration, numberOr(audio.duration, null)),
      coverArt: probe.streams.some((s) => s.disposition?.attached_pic === 1),
      loudness: { measured: Number(measured.input_i), target: task.loudness, truePeak: Number(measured.input_tp) },
      creationTime: probe.format.tags?.creation_time ?? null,
    };
    return { ok: true, outputs, media };
  });
}

/** Only local files, only the accepted containers; every log line tagged with its level. */
function inputOptions(level: 'info' | 'error', input: string): string[] {
  return ['-hide_banner', '-nostdin', '-nostats', '-loglevel', `level+${level}`, '-protocol_whitelist', 'file', '-format_whitelist', AUDIO_DEMUXERS, '-i', `file:${input}`];
}

function loudnorm(target: number): string {
  return `loudnorm=I=${target}:TP=${TRUE_PEAK}:LRA=${LOUDNESS_RANGE}`;
}

interface LoudnormMeasures {
  input_i: string;
  input_tp: string;
  input_lra: string;
  input_thresh: string;
  target_offset: string;
}

/** The JSON `loudnorm` prints at the end of its first pass. */
function loudnormMeasures(stderr: string): LoudnormMeasures | undefined {
  const block = /\{[^{}]*"input_i"[^{}]*\}/.exec(stderr);
  return block ? (JSON.parse(block[0]) as LoudnormMeasures) : undefined;
}

/** ffmpeg's error lines (tagged by `-loglevel level+…`) without their tags. */
function errorLines(stderr: string): string {
  return stderr
    .split(/\r\n|\r|\n/)
    .filter((line) => /\[(error|fatal|panic)\]/.test(line))
    .map((line) => line.replace(/\[(error|fatal|panic)\]\s*/, ''))
    .join('\n');
}

function describeStream(stream: ProbeStream): string {
  const kind = stream.disposition?.attached_pic === 1 ? 'cover art' : (stream.codec_type ?? 'unknown');
  return `${kind} ${stream.codec_name ?? ''}`.trim();
}

/** -1…1 as a signed 8-bit value. */
function toByte(sample: number): number {
  return Math.max(-128, Math.min(127, Math.round(sample * 128)));
}

function suffix(text: string): string {
  return text ? `: ${text}` : '';
}
