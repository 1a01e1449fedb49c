import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.ts';

export type { Logger };

/**
 * JSON lines on stdout (stderr for commands, whose stdout is their answer); one logger per
 * process, children per part.
 */
export function createLogger(level: LogLevel, output: 'stdout' | 'stderr' = 'stdout'): Logger {
  const options = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  return output === 'stdout' ? pino(options) : pino(options, pino.destination(2));
}
