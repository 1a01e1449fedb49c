import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanUpExpired } from '../server/jobs/cleanup.ts';
import type { RunningServer } from '../server/main/start.ts';
import { pdf } from './support/samples.ts';
import { testS3Client } from './services/env.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf } from './support/uploads.ts';

describe('cleanup of expired uploads on S3', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  const s3 = testS3Client();

  beforeAll(async () => {
    // Cleanup is run by hand here, so the server's own schedule must not race it.
    environment = await createTestEnvironment('scaleout', { UPLOAD_EXPIRES_AFTER: '1h', CLEANUP_INTERVAL: '1h' });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
    s3.destroy();
  });

  const bucket = () => environment.env.S3_BUCKET!;
  const objectsOf = async (id: string) =>
    ((await s3.send(new ListObjectsV2Command({ Bucket: bucket(), Prefix: id }))).Contents ?? []).map((o) => o.Key);
  const multipartsOf = async (id: string) =>
    ((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket(), Prefix: id }))).Uploads ?? []).map((u) => u.Key);

  it('aborts the multipart upload, deletes its parts and marks the record expired; finished uploads stay', async () => {
    const data = pdf(7 * 1024 * 1024);
    // 5 MiB goes up as a multipart part; the rest of the first PATCH stays behind as <id>.part.
    const partial = await tusUpload(server.url, data, { filename: 'partial.pdf', chunkSize: 6 * 1024 * 1024, abortAfterBytes: 6 * 1024 * 1024 });
    const id = uploadIdOf(partial.url);
    const finished = await tusUpload(server.url, pdf(1000), { filename: 'done.pdf' });
    const finishedId = uploadIdOf(finished.url);
    expect(await multipartsOf(id)).toEqual([id]);
    expect(await objectsOf(id)).toEqual(expect.arrayContaining([`${id}.info`]));

    // The cleanup's clock, not the wall's: a slow machine cannot make the upload expire early.
    expect(await cleanUpExpired(server.services.context)).toMatchObject({ expired: 0 });
    const result = await cleanUpExpired(server.services.context, { now: new Date(Date.now() + 2 * 3600_000) });

    expect(result.expired).toBe(1);
    expect(await fetchStatus(server.url, id)).toMatchObject({ status: 'expired', reason: expect.stringContaining('not finished before') });
    expect(await multipartsOf(id)).toEqual([]);
    expect(await objectsOf(id)).toEqual([]);
    const head = await fetch(partial.url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
    expect([404, 410]).toContain(head.status);

    expect((await fetchStatus(server.url, finishedId)).status).not.toBe('expired');
    expect(await objectsOf(finishedId)).toContain(finishedId);
  });
});
