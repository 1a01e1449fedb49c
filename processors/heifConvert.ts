import { spawn } from 'node:child_process';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { SYSTEM_TROUBLE, type Children } from './childProcesses.ts';
import { HEIF_INTERMEDIATE_JPEG_QUALITY } from './encoderPresets.ts';
import { ffmpegWords } from './ffmpeg.ts';

/**
 * HEVC-coded HEIF ("HEIC", what iPhones write) through Debian's `heif-convert` (libheif-examples,
 * HEVC by libde265): sharp's bundled libvips has no HEVC decoder. The child decodes the primary
 * image (a grid of tiles on iPhones), applies its `irot`/`imir`/`clap` transformations, and writes
 * a JPEG at quality 95 (a PNG when the picture has alpha) that sharp then reads. It runs as a
 * child of this pool thread, adopted by the job's `Children` (killed and reaped on timeout or
 * cancel); one image job runs at most one, so no more run at once than the pool has threads.
 *
 * The file it writes is already upright but keeps the EXIF Orientation tag of the original:
 * whoever reads it must not turn it again.
 */

const HEIF_CONVERT = 'heif-convert';

export type HeifDecoded = { ok: true; file: string } | { ok: false; reason: string };

/** Decodes `input` into a file under `workDir` (created, and the caller's to remove). Throws when heif-convert cannot run at all. */
export async function heifConvert(children: Children, input: string, workDir: string, alpha: boolean): Promise<HeifDecoded> {
  await mkdir(workDir, { recursive: true });
  const target = path.join(workDir, alpha ? 'decoded.png' : 'decoded.jpg');
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve, reject) => {
    const child = spawn(HEIF_CONVERT, ['--quiet', '-q', String(HEIF_INTERMEDIATE_JPEG_QUALITY), input, target], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 8192) stderr += chunk;
    });
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new Error('heif-convert is not installed (Debian package libheif-examples)') : err),
    );
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
    children.adopt(child);
  });
  const words = ffmpegWords(exit.stderr, [[input, 'input'], [workDir, 'output']]);
  // Killed by us (timeout, cancel): the caller knows why. Killed by anyone else (the OOM killer)
  // or the machine in trouble: thrown, so the job is retried.
  if (exit.signal !== null && !children.closed) throw new Error(`heif-convert died of ${exit.signal}`);
  if (exit.code !== 0 || exit.signal !== null) {
    if (SYSTEM_TROUBLE.test(exit.stderr)) throw new Error(`heif-convert failed: ${words}`);
    return { ok: false, reason: words || `heif-convert exited with code ${exit.code}` };
  }
  // A file of several top-level images becomes decoded-1.jpg, decoded-2.jpg, …: the first is kept.
  const [file] = (await readdir(workDir)).filter((name) => name.startsWith('decoded')).sort();
  if (file === undefined) return { ok: false, reason: 'heif-convert wrote no image' };
  await Promise.all((await readdir(workDir)).filter((name) => name !== file).map((name) => rm(path.join(workDir, name), { force: true })));
  return { ok: true, file: path.join(workDir, file) };
}
