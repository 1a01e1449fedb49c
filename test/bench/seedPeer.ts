// The seed's FastAPI streaming endpoint (seedFastapi.py) as a bench peer: Debian's python3 with
// its FastAPI, uvicorn, aiofiles, uvloop and httptools (test/services/install.sh), one uvloop worker.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { baseEnv } from './common.ts';
import { repoRoot, startProcess, type ChildServer } from './processes.ts';

/** Debian's interpreter, not whatever `python3` the PATH finds first (pyenv, a venv). */
const python = '/usr/bin/python3';

/** Starts the endpoint writing into `dir`/uploads; it answers POST /upload/stream/ with the whole body. */
export async function startSeedPeer(dir: string): Promise<ChildServer> {
  await promisify(execFile)(python, ['-c', 'import fastapi, uvicorn, aiofiles, uvloop, httptools']).catch((error: Error) => {
    throw new Error(`the seed's FastAPI endpoint needs Debian's python3-fastapi & co.: run test/services/install.sh\n${error.message}`);
  });
  await fs.mkdir(path.join(dir, 'uploads'), { recursive: true });
  const args = ['-m', 'uvicorn', 'seedFastapi:app', '--app-dir', path.join(repoRoot, 'test/bench'), '--host', '127.0.0.1', '--port', '0'];
  const options = ['--loop', 'uvloop', '--http', 'httptools', '--workers', '1', '--log-level', 'warning', '--no-access-log'];
  return startProcess('seed', python, [...args, ...options], baseEnv(), { cwd: dir });
}
