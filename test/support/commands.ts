import { execFile } from 'node:child_process';
import { repoRoot } from '../services/env.ts';
import { npmScriptArgs } from './processes.ts';

export interface CommandRun {
  code: number;
  /** stdout, one parsed JSON line each. */
  lines: Record<string, unknown>[];
  stderr: string;
}

/** A maintenance command (`npm run cleanup`, …) as a child process: what its npm script runs, without npm's start-up. */
export function runCommandScript(script: string, args: string[], env: Record<string, string>): Promise<CommandRun> {
  return new Promise<CommandRun>((resolve) => {
    execFile(process.execPath, [...npmScriptArgs(script), ...args], { cwd: repoRoot, env: { PATH: process.env.PATH!, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      const lines = stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
      resolve({ code: error ? Number(error.code ?? 1) : 0, lines, stderr });
    });
  });
}
