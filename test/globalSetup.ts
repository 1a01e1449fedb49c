// vitest globalSetup: make sure the real services (PostgreSQL, clamd, radosgw) are up
// before any test file runs. They are left running: starting is idempotent and cheap,
// and stopping is the CI script's job. A service that cannot start fails the whole run
// loudly; tests must never silently skip because a backing service is missing.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, servicesDir } from './services/env.ts';

const SERVICES = ['postgres', 'clamd', 'radosgw'] as const;

function start(name: string): Promise<void> {
  const script = path.join(repoRoot, 'test/services', `${name}.sh`);
  return new Promise((resolve, reject) => {
    if (!existsSync(script)) {
      reject(new Error(`${name}: ${script} does not exist`));
      return;
    }
    execFile(
      'bash',
      [script, 'start'],
      { env: { ...process.env, SERVICES_DIR: servicesDir }, timeout: 300_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${name}: ${err.message}\n${stdout}${stderr}`));
        else resolve();
      },
    );
  });
}

export default async function setup(): Promise<void> {
  const t0 = Date.now();
  // Independent services: start them side by side.
  const results = await Promise.allSettled(SERVICES.map(start));
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason?.message ?? r.reason)] : []));
  if (failures.length > 0) {
    const bar = '='.repeat(78);
    throw new Error(
      `\n${bar}\nTEST SERVICES FAILED TO START (run \`bash test/services/install.sh\` as root first?)\n` +
        `${failures.join('\n' + '-'.repeat(78) + '\n')}\n${bar}`,
    );
  }
  console.log(`[globalSetup] services up (${SERVICES.join(', ')}) in ${Date.now() - t0} ms`);
}
