import { execFile } from 'node:child_process';
import path from 'node:path';
import { repoRoot, servicesDir } from '../services/env.ts';

/** Runs `test/services/<name>.sh <command>` (start, stop, status) with extra environment, e.g. a private CLAMD_INSTANCE. */
export function serviceScript(name: 'clamd' | 'private-postgres', command: string, env: Record<string, string> = {}): Promise<string> {
  const script = path.join(repoRoot, 'test/services', `${name}.sh`);
  return new Promise((resolve, reject) => {
    execFile('bash', [script, command], { env: { ...process.env, SERVICES_DIR: servicesDir, ...env }, timeout: 120_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${name}.sh ${command} failed: ${err.message}\n${stdout}${stderr}`)) : resolve(stdout + stderr),
    );
  });
}
