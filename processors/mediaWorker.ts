import sharp from 'sharp';
import { imageJob } from './imageJob.ts';
import type { MediaOutcome, MediaTask } from './mediaTasks.ts';
import { videoJob } from './videoJob.ts';

// Every job reads a new file once: libvips' operation cache could only ever hit on a stale
// entry, and it keeps up to 50 MB of pixels per process.
sharp.cache(false);

/** The piscina worker entry: one task, one processor, run on this worker thread. */
export default function runMediaTask(task: MediaTask): Promise<MediaOutcome> {
  return task.kind === 'image' ? imageJob(task) : videoJob(task);
}
