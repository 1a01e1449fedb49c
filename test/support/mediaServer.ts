import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, expect } from 'vitest';
import type { UploadStatusJson } from '../../hooks/uploadStatusJson.ts';
import type { RunningServer } from '../../server/main/start.ts';
import { makeSampleDir } from './imageSamples.ts';
import { createTestEnvironment, startTestServer, type Setup, type TestEnvironment } from './testServer.ts';
import { tusUpload, uploadIdOf, waitUntilSettled } from './uploads.ts';

export interface MediaServer {
  readonly url: string;
  /** A folder for the samples the tests generate. */
  readonly dir: string;
  /** Uploads a file over tus and waits until its upload has settled. */
  upload(file: string, filename: string, filetype: string | undefined, timeoutMs?: number): Promise<UploadStatusJson>;
  /** An output's (or the original's) bytes, from its link; it must answer 200. */
  fetchOutput(url: string | null): Promise<Buffer>;
}

/**
 * A server of `setup` and a sample folder for the media tests of one describe block: started
 * before its tests, stopped and removed after them. `overrides` may be made when it starts (a
 * webhook receiver's address).
 */
export function useMediaServer(setup: Setup, overrides: Record<string, string> | (() => Promise<Record<string, string>>)): MediaServer {
  let environment: TestEnvironment | undefined;
  let server: RunningServer | undefined;
  let samples: { dir: string; cleanup: () => Promise<void> } | undefined;
  beforeAll(async () => {
    environment = await createTestEnvironment(setup, typeof overrides === 'function' ? await overrides() : overrides);
    server = await startTestServer(environment);
    samples = await makeSampleDir();
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
    await samples?.cleanup();
  });
  const started = <T>(value: T | undefined): T => value ?? (() => { throw new Error('the media server is not started (used outside a test?)'); })();
  return {
    get url() {
      return started(server).url;
    },
    get dir() {
      return started(samples).dir;
    },
    async upload(file, filename, filetype, timeoutMs = 60_000) {
      const { url } = await tusUpload(started(server).url, await readFile(file), { filename, filetype, chunkSize: 8 * 1024 * 1024 });
      return waitUntilSettled(started(server).url, uploadIdOf(url), timeoutMs);
    },
    async fetchOutput(url) {
      const res = await fetch(url!);
      expect(res.status).toBe(200);
      return Buffer.from(await res.arrayBuffer());
    },
  };
}
