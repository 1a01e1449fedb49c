import { rm } from 'node:fs/promises';
import { JobControl, Stopped } from './childProcesses.ts';
import type { MediaOutcome } from './mediaTasks.ts';

/**
 * Runs a media job's body under its time budget and cancel message (`JobControl`): a stopped job
 * ends with the reason, its children are always killed and reaped, and on any outcome but success
 * none of `files` is left behind.
 */
export async function controlledJob(
  task: { timeoutMs: number; port?: import('node:worker_threads').MessagePort },
  files: Record<string, string>,
  body: (control: JobControl) => Promise<MediaOutcome>,
): Promise<MediaOutcome> {
  const control = new JobControl(task.timeoutMs, task.port);
  let succeeded = false;
  try {
    const outcome = await body(control);
    succeeded = outcome.ok;
    return outcome;
  } catch (err) {
    if (err instanceof Stopped) return { ok: false, reason: control.reason() };
    throw err;
  } finally {
    await control.release();
    if (!succeeded) await Promise.allSettled(Object.values(files).map((file) => rm(file, { force: true })));
  }
}
