import fs from 'node:fs/promises';
import path from 'node:path';
import type { MediaPool } from '../../processors/mediaPool.ts';
import type { MediaTask, OutputName, ProducedOutput } from '../../processors/mediaTasks.ts';
import { outputFileType } from '../../processors/outputFiles.ts';
import { findUpload, saveOutputs, saveOutputsOfReady } from '../infra/db/records.ts';
import type { Config } from '../infra/settings/config.ts';
import { STORYBOARD_MIN_SECONDS } from '../../processors/storyboard.ts';
import { PermanentJobError, type JobHandler, type JobOutcome } from './jobRunner.ts';
import { outputKey, type Storage } from '../infra/store/storage.ts';
import { processTempPath } from '../infra/processes/processTempFiles.ts';
import type { HookContext } from '../../hooks/hookContext.ts';

/** Every output each kind of media must have before its upload may become `ready`. */
export const expectedOutputs: Record<MediaTask['kind'], OutputName[]> = {
  image: ['resized', 'thumbnail', 'webp'],
  video: ['mp4', 'poster', 'thumbnail'],
  audio: ['audio', 'waveform'],
};

/** The outputs a video of `duration` seconds gets with these settings. */
export function videoOutputsFor(config: Pick<Config, 'hls' | 'storyboard'>, duration: number | null): OutputName[] {
  return [
    ...expectedOutputs.video,
    ...(config.hls ? (['hls'] as const) : []),
    ...(config.storyboard && (duration ?? 0) > STORYBOARD_MIN_SECONDS ? (['storyboard'] as const) : []),
  ];
}

/**
 * The `image`, `video` and `audio` jobs: get the original as a local file (ffmpeg and sharp want a
 * seekable file; S3 gives a stream, copied to a temp dir), run the processor on the pool,
 * store each output, then record outputs, metadata and `ready` together. Bad media ends `failed` with the
 * processor's reason; an unexpected error is retried. Temp files are always removed.
 */
export function processMedia(context: HookContext, pool: MediaPool): JobHandler {
  const { db, storage, config, lifecycle } = context;
  return async (job, { signal, reportProgress, log }): Promise<JobOutcome> => {
    const kind = job.kind === 'video' || job.kind === 'audio' ? job.kind : 'image';
    const upload = await findUpload(db, job.upload_id);
    if (!upload) throw new PermanentJobError('the upload record is gone');
    // A ready image or video is here for outputs (or a thumbhash) it lacks (requeue.ts): it stays
    // ready, its outputs and media are replaced.
    const refresh = upload.status === 'ready' && kind !== 'audio';
    if (upload.status !== 'processing' && !refresh) return { result: { skipped: `upload is ${upload.status}` }, commit: async () => undefined };

    // Named for this process: what a crash leaves is removed at the next start (processTempFiles.ts).
    const workDir = await fs.mkdtemp(processTempPath('media', `${upload.id}-`));
    try {
      const outputDir = path.join(workDir, 'outputs');
      await fs.mkdir(outputDir);
      const input = await storage.originalFile(upload.storage_key, workDir, signal);
      const tasks: Record<MediaTask['kind'], () => MediaTask> = {
        image: () => ({ kind: 'image', input, outputDir, timeoutMs: config.imageTimeoutMs, maxPixels: config.maxImagePixels }),
        video: () => ({ kind: 'video', input, outputDir, timeoutMs: config.videoTimeoutMs, maxPixels: config.maxVideoPixels, hls: config.hls, storyboard: config.storyboard }),
        audio: () => ({ kind: 'audio', input, outputDir, timeoutMs: config.audioTimeoutMs, loudness: config.audioLoudness, waveformPoints: config.waveformPoints }),
      };
      const task = tasks[kind]();
      let lastReport = 0;
      const outcome = await pool.run(task, {
        signal,
        onProgress: (percent) => {
          if (Date.now() - lastReport < 1000) return;
          lastReport = Date.now();
          reportProgress(percent).catch((err: unknown) => log.warn({ err }, 'recording progress failed'));
        },
      });
      if (!outcome.ok && refresh) {
        log.warn({ reason: outcome.reason }, `a ready ${kind} refused by its processor on a rerun; its outputs are kept`);
        return { result: { reason: outcome.reason }, commit: async () => undefined };
      }
      if (!outcome.ok) {
        log.info({ reason: outcome.reason }, `${kind} refused by its processor`);
        return {
          result: { reason: outcome.reason },
          commit: async (trx) => {
            const failed = await lifecycle.move(trx, upload.id, 'failed', { from: ['processing'], reason: outcome.reason });
            if (!failed.ok) log.info({ status: failed.current?.status }, 'processed upload had moved on; its state is kept');
          },
        };
      }
      const missing = expectedOutputs[kind].filter((name) => !outcome.outputs.some((o) => o.name === name));
      if (missing.length > 0) throw new Error(`${kind} processor did not produce ${missing.join(', ')}`);
      for (const output of outcome.outputs) await storeProduced(storage, upload.id, output);
      const outputs = outcome.outputs.map((o) => ({
        name: o.name, contentType: o.contentType, size: o.size, width: o.width, height: o.height, storageKey: outputKey(upload.id, o.name),
      }));
      // Deleted (or failed) while this job ran: its outputs are nobody's, so they go (the original stays for a failed one).
      let orphaned = false;
      return {
        result: { outputs: outputs.map((o) => o.name), ...detailsOf(outcome.outputs) },
        commit: async (trx) => {
          if (refresh) {
            orphaned = !(await saveOutputsOfReady(trx, upload.id, outputs, outcome.media));
            return;
          }
          const ready = await lifecycle.move(trx, upload.id, 'ready', {
            from: ['processing'],
            facts: { media: outcome.media },
            with: (trx) => saveOutputs(trx, upload.id, outputs),
          });
          orphaned = !ready.ok;
          if (!ready.ok) log.info({ status: ready.current?.status }, 'processed upload had moved on; its outputs are removed');
        },
        afterCommit: async () => {
          if (orphaned) await storage.removeOutputs(upload.id);
        },
      };
    } finally {
      await fs.rm(workDir, { recursive: true, force: true });
    }
  };
}

/**
 * One output into the store: a file under its key, or each file of a multi-file output under
 * its key's folder (`outputs/<id>/hls/720p_001.m4s`), the master playlist last, so the output's
 * entry point never names a file the store does not hold yet.
 */
async function storeProduced(storage: Storage, uploadId: string, output: ProducedOutput): Promise<void> {
  const key = outputKey(uploadId, output.name);
  if (output.files === undefined) return storage.storeOutput(key, output.path, output.contentType);
  const [entry, ...rest] = output.files;
  for (const file of [...rest, ...(entry ? [entry] : [])]) {
    const type = outputFileType(file);
    if (type === undefined) throw new Error(`${output.name} output has a file named ${file}, which nothing serves`);
    await storage.storeOutput(`${key}/${file}`, path.join(output.path, file), type);
  }
}

/** What an output tells about itself (the bytes of each HLS rendition), kept in the job's result. */
function detailsOf(outputs: ProducedOutput[]): Record<string, unknown> {
  return Object.fromEntries(outputs.flatMap((o) => (o.details ? [[o.name, o.details]] : [])));
}
