import { imageJob } from './imageJob.ts';
import type { MediaOutcome, MediaTask } from './mediaTypes.ts';
import { videoJob } from './videoJob.ts';

/** The piscina worker entry: one task, one processor, run on this worker thread. */
export default function runMediaTask(task: MediaTask): Promise<MediaOutcome> {
  return task.kind === 'image' ? imageJob(task) : videoJob(task);
}
