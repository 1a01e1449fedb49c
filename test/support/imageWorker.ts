/** Piscina worker entry for tests: the pool calls the default export with each task. */
export { imageJob as default } from '../../processors/imageJob.ts';
