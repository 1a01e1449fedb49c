import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * A new folder under the system temp dir, 0755 rather than mkdtemp's 0700: run as root, the
 * embedded Postgres runs as an unprivileged user, who must be able to reach a DATA_DIR inside it.
 */
export async function reachableTempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  await fs.chmod(dir, 0o755);
  return dir;
}
