export type OutputName = 'resized' | 'thumbnail' | 'webp' | 'mp4' | 'poster' | 'hls' | 'storyboard' | 'audio' | 'waveform';
/**
 * `width` and `height` are null for outputs that are not pictures (audio, waveform). `files`: a
 * multi-file output (`hls`, `storyboard`) is the folder `path` holding these files, its entry file
 * (outputFiles.ts) first, its `size` their sum; `details` are facts about it the job reports (the bytes of each rendition).
 */
export interface ProducedOutput { name: OutputName; path: string; contentType: string; size: number; width: number | null; height: number | null; files?: string[]; details?: Record<string, unknown> }
/** Workers return outcomes instead of throwing: custom error classes do not survive the thread boundary. */
export type MediaOutcome =
  | { ok: true; outputs: ProducedOutput[]; media: Record<string, unknown> }
  | { ok: false; reason: string };  // the input itself is bad or unsupported: retrying cannot help
/** `timeoutMs` bounds an image job's heif-convert; `port` as for a video, without progress. */
export interface ImageTask { kind: 'image'; input: string; outputDir: string; timeoutMs: number; maxPixels: number; port?: import('node:worker_threads').MessagePort }
/**
 * `hls`: the ladder and segment length of the `hls` output, absent for none; `storyboard`: whether
 * clips over 10 s get one; `port`: the job posts `{ percent }` on it, and stops (ffmpeg killed and
 * reaped) when it receives `{ cancel: true }`.
 */
export interface VideoTask {
  kind: 'video';
  input: string;
  outputDir: string;
  timeoutMs: number;
  maxPixels: number;
  hls?: import('./hlsLadder.ts').HlsSettings;
  storyboard?: boolean;
  port?: import('node:worker_threads').MessagePort;
}
/** `loudness`: the output's integrated loudness, LUFS; `waveformPoints`: min/max pairs in the waveform. `port` as for a video. */
export interface AudioTask { kind: 'audio'; input: string; outputDir: string; timeoutMs: number; loudness: number; waveformPoints: number; port?: import('node:worker_threads').MessagePort }
export type MediaTask = ImageTask | VideoTask | AudioTask;
