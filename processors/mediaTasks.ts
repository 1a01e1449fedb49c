export type OutputName = 'resized' | 'thumbnail' | 'webp' | 'mp4' | 'poster';
export interface ProducedOutput { name: OutputName; path: string; contentType: string; size: number; width: number; height: number }
/** Workers return outcomes instead of throwing: custom error classes do not survive the thread boundary. */
export type MediaOutcome =
  | { ok: true; outputs: ProducedOutput[]; media: Record<string, unknown> }
  | { ok: false; reason: string };  // the input itself is bad or unsupported: retrying cannot help
export interface ImageTask { kind: 'image'; input: string; outputDir: string; maxPixels: number }
/** `port`: the job posts `{ percent }` on it, and stops (ffmpeg killed and reaped) when it receives `{ cancel: true }`. */
export interface VideoTask { kind: 'video'; input: string; outputDir: string; timeoutMs: number; maxPixels: number; port?: import('node:worker_threads').MessagePort }
export type MediaTask = ImageTask | VideoTask;
