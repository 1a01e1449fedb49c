import type { Migration } from 'kysely';
import * as initial from './001_initial.ts';

/** Every migration, in order; listed here so they ship with the code instead of being found on disk. */
export const migrations: Record<string, Migration> = {
  '001_initial': initial,
};
