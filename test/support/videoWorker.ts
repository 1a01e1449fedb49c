/** Piscina worker entry for tests: the pool calls the default export with each task. */
export { videoJob as default } from '../../processors/videoJob.ts';
