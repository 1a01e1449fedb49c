export type OutputName = 'resized' | 'thumbnail' | 'webp' | 'mp4' | 'poster' | 'audio' | 'waveform';
/** `width` and `height` are null for outputs that are not pictures (audio, waveform). */
export interface ProducedOutput { name: OutputName; path: string; contentType: string; size: number; width: number | null; height: number | null }
/** Workers return outcomes instead of throwing: custom error classes do not survive the thread boundary. */
export type MediaOutcome =
  | { ok: true; outputs: ProducedOutput[]; media: Record<string, unknown> }
  | { ok: false; reason: string };  // the input itself is bad or unsupported: retrying cannot help
/** `timeoutMs` bounds an image job's heif-convert; `port` as for a video, without progress. */
export interface ImageTask { kind: 'image'; input: string; outputDir: string; timeoutMs: number; maxPixels: number; port?: import('node:worker_threads').MessagePort }
/** `port`: the job posts `{ percent }` on it, and stops (ffmpeg killed and reaped) when it receives `{ cancel: true }`. */
export interface VideoTask { kind: 'video'; input: string; outputDir: string; timeoutMs: number; maxPixels: number; port?: import('node:worker_threads').MessagePort }
/** `loudness`: the output's integrated loudness, LUFS; `waveformPoints`: min/max pairs in the waveform. `port` as for a video. */
export interface AudioTask { kind: 'audio'; input: string; outputDir: string; timeoutMs: number; loudness: number; waveformPoints: number; port?: import('node:worker_threads').MessagePort }
export type MediaTask = ImageTask | VideoTask | AudioTask;
