/**
 * Piscina worker entry for tests: a task whose input is named `crash-the-thread` ends its thread
 * with an uncaught error, as a bug in a processor would; any other task runs the real worker.
 */
import runMediaTask from '../../processors/mediaWorker.ts';
import type { MediaOutcome, MediaTask } from '../../processors/mediaTasks.ts';

export default function crashOrRun(task: MediaTask): Promise<MediaOutcome> {
  if (!task.input.endsWith('crash-the-thread')) return runMediaTask(task);
  return new Promise(() => {
    setImmediate(() => {
      throw new Error('the media thread crashed');
    });
  });
}
