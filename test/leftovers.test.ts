import fs from 'node:fs/promises';
import path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/start.ts';
import { eventually } from './support/eventually.ts';
import { testS3Client } from './services/env.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf } from './support/uploads.ts';
import { h264Clip, makeSampleDir, removeSampleDir } from './support/videoSamples.ts';

/** Nothing an upload no longer keeps stays in the store or in `outputs`: a job whose upload was deleted under it removes what it made. */
describe.each(setups)('leftovers (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let samples: string;
  const s3 = testS3Client();

  beforeAll(async () => {
    environment = await createTestEnvironment(setup, { CLEANUP_INTERVAL: '1h', WORKER_THREADS: '1' });
    server = await startTestServer(environment);
    samples = await makeSampleDir();
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
    await removeSampleDir(samples);
    s3.destroy();
  });

  const context = () => server.services.context;
  const db = () => context().db;

  /** Every key the store holds for an upload: its original, tus info, parts, outputs. */
  async function storedKeys(id: string): Promise<string[]> {
    if (setup === 'scaleout') {
      const bucket = environment.env.S3_BUCKET!;
      const list = async (prefix: string) => ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!);
      const multiparts = ((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: id }))).Uploads ?? []).map((u) => `multipart ${u.Key}`);
      return [...(await list(id)), ...(await list(`outputs/${id}/`)), ...multiparts];
    }
    const uploads = (await fs.readdir(path.join(environment.dataDir, 'uploads')).catch(() => [])).filter((name) => name.startsWith(id));
    const outputs = (await fs.readdir(path.join(environment.dataDir, 'outputs', id)).catch(() => [])).map((name) => `outputs/${id}/${name}`);
    return [...uploads, ...outputs];
  }

  const outputRows = (id: string) => db().selectFrom('outputs').select('name').where('upload_id', '=', id).execute();
  const eventsOf = async (id: string) =>
    (await db().selectFrom('upload_events').select(['from_status', 'to_status']).where('upload_id', '=', id).orderBy('seq').execute()).map((e) => `${e.from_status}→${e.to_status}`);

  it('a video deleted while its job runs keeps nothing: no mp4, poster or thumbnail in the store, no outputs rows', async () => {
    const clip = await h264Clip(samples, { seconds: 20, width: 1280, height: 720 });
    const { url } = await tusUpload(server.url, await fs.readFile(clip), { filename: 'long.mp4', filetype: 'video/mp4', chunkSize: 8 * 1024 * 1024 });
    const id = uploadIdOf(url);
    // Encoding, not only claimed: a job that has not read its upload yet would just skip a deleted one.
    await eventually('the video job to encode', async () => (await fetchStatus(server.url, id)).jobs.some((j) => j.kind === 'video' && j.status === 'running' && (j.progress ?? 0) > 0), 60_000);
    const deleted = await fetch(`${server.url}/api/uploads/${id}`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);

    // The job runs on, stores its outputs, and finds its final transition refused.
    const settled = await eventually('the video job to end', async () => {
      const status = await fetchStatus(server.url, id);
      return status.jobs.find((j) => j.kind === 'video' && j.status === 'done') && status;
    }, 120_000);
    expect(settled).toMatchObject({ status: 'deleted', outputs: [] });
    // It was deleted from `processing`, and never became ready: the job did run to its end under a deleted upload.
    expect(await eventsOf(id)).toEqual(['null→uploading', 'uploading→received', 'received→inspecting', 'inspecting→processing', 'processing→deleted']);
    // It had stored all three before it found out.
    const job = await db().selectFrom('jobs').select('result').where('upload_id', '=', id).where('kind', '=', 'video').executeTakeFirstOrThrow();
    expect((job.result as { outputs: string[] }).outputs.sort()).toEqual(['mp4', 'poster', 'thumbnail']);
    // Removed once the job's transaction committed (the job shows `done` a moment before).
    await eventually('its outputs to be removed', async () => ((await storedKeys(id)).length === 0 ? true : undefined), 10_000);
    expect(await outputRows(id)).toEqual([]);
  }, 240_000);
});
