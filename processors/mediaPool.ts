import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
// sharp must be loaded by the main thread before worker threads load it (lovell/sharp#2263).
import 'sharp';
import type { MediaOutcome, MediaTask } from './mediaTypes.ts';

export interface MediaPool {
  /** Runs an image or video task on a worker thread; `onProgress` hears video progress in percent. */
  run(task: MediaTask, options?: { signal?: AbortSignal; onProgress?: (percent: number) => void }): Promise<MediaOutcome>;
  close(): Promise<void>;
}

/**
 * One piscina pool per process: sharp and ffmpeg never run on the event loop. A task that
 * crashes its thread rejects that task only; piscina replaces the thread.
 */
export function createMediaPool(threads: number): MediaPool {
  const pool = new Piscina<MediaTask, MediaOutcome>({
    filename: new URL('./mediaWorker.ts', import.meta.url).href,
    maxThreads: threads,
    minThreads: 0,
    idleTimeout: 30_000,
    // The workers load TypeScript through tsx, whatever started this process (tsx, vitest)
    // and whatever the working directory. Only that: the parent's own flags are not passed on,
    // since a worker refuses V8 flags (`npm start` sets --initial-old-space-size, --expose-gc).
    execArgv: ['--import', import.meta.resolve('tsx')],
  });
  return {
    run: async (task, { signal, onProgress } = {}) => {
      if (task.kind !== 'video' || !onProgress) return pool.run(task, { signal });
      const channel = new MessageChannel();
      channel.port1.on('message', (message: { percent: number }) => onProgress(message.percent));
      try {
        return await pool.run({ ...task, progress: channel.port2 }, { signal, transferList: [channel.port2] });
      } finally {
        channel.port1.close();
      }
    },
    close: () => pool.destroy(),
  };
}
