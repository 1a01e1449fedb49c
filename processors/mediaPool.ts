import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { MediaOutcome, MediaTask } from './mediaTasks.ts';

export interface MediaPool {
  /** Runs an image or video task on a worker thread; `onProgress` hears video progress in percent. */
  run(task: MediaTask, options?: { signal?: AbortSignal; onProgress?: (percent: number) => void }): Promise<MediaOutcome>;
  close(): Promise<void>;
}

/**
 * One piscina pool per process: sharp and ffmpeg never run on the event loop. A task that
 * crashes its thread rejects that task only; piscina replaces the thread. `entry` is the worker
 * module (`mediaWorker.ts`; tests give one that can crash its thread).
 *
 * The threads start with the first task (a server that runs no jobs never starts them) and then
 * stay: with fewer than `threads` kept alive, piscina 5.3 does not replace a crashed thread, and
 * a task waiting in its queue would wait for ever.
 */
export function createMediaPool(threads: number, entry = new URL('./mediaWorker.ts', import.meta.url)): MediaPool {
  let started: Promise<Piscina<MediaTask, MediaOutcome>> | undefined;
  // sharp must be loaded by the main thread before worker threads load it (lovell/sharp#2263);
  // loaded here rather than at import, libvips stays out of a process that runs no media.
  const pool = () =>
    (started ??= import('sharp').then(() => new Piscina<MediaTask, MediaOutcome>({
      // A thread inherits this one's node flags (the compile cache's preload too) and reads the
      // TypeScript entry with Node's type stripping, as this one does: no loader to pass on.
      filename: entry.href,
      minThreads: threads,
      maxThreads: threads,
    })));
  return {
    run: async (task, { signal, onProgress } = {}) => {
      // A task is cancelled through its port, so it kills and reaps its children (ffmpeg,
      // heif-convert) itself; a terminated thread would leave the killed children as zombies.
      signal?.throwIfAborted();
      const channel = new MessageChannel();
      channel.port1.on('message', (message: { percent: number }) => onProgress?.(message.percent));
      const cancel = () => channel.port1.postMessage({ cancel: true });
      signal?.addEventListener('abort', cancel, { once: true });
      try {
        const outcome = await (await pool()).run({ ...task, port: channel.port2 }, { transferList: [channel.port2] });
        signal?.throwIfAborted();
        return outcome;
      } finally {
        signal?.removeEventListener('abort', cancel);
        channel.port1.close();
      }
    },
    close: async () => {
      await (await started)?.destroy();
    },
  };
}
