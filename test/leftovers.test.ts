import fs from 'node:fs/promises';
import path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanUpExpired } from '../server/jobs/cleanup.ts';
import type { RunningServer } from '../server/main/start.ts';
import { eventually } from './support/eventually.ts';
import { eicar, pdf } from './support/samples.ts';
import { testS3Client } from './services/env.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';
import { corruptMp4, h264Clip, makeSampleDir, removeSampleDir } from './support/videoSamples.ts';

/**
 * Nothing an upload no longer keeps stays in the store or in `outputs`: a job whose upload was
 * deleted under it removes what it made; cleanup removes failed originals after FAILED_RETENTION,
 * reclaims what a crash left of removed uploads, and finishes an upload whose last byte was
 * stored but never recorded.
 */
describe.each(setups)('leftovers (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let samples: string;
  const s3 = testS3Client();
  const hour = 3600_000;

  beforeAll(async () => {
    // Cleanup is run by hand here (with its own clock), so the server's schedule must not race it.
    environment = await createTestEnvironment(setup, { CLEANUP_INTERVAL: '1h', FAILED_RETENTION: '2h', WORKER_THREADS: '1' });
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

  /** Puts an object in the store as a crash would have left it. */
  async function leaveBehind(key: string): Promise<void> {
    if (setup === 'scaleout') {
      await s3.send(new PutObjectCommand({ Bucket: environment.env.S3_BUCKET!, Key: key, Body: 'left behind' }));
      return;
    }
    const file = key.startsWith('outputs/') ? path.join(environment.dataDir, key) : path.join(environment.dataDir, 'uploads', key);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, 'left behind');
  }

  const outputRows = (id: string) => db().selectFrom('outputs').select('name').where('upload_id', '=', id).execute();
  const eventsOf = async (id: string) =>
    (await db().selectFrom('upload_events').select(['from_status', 'to_status']).where('upload_id', '=', id).orderBy('seq').execute()).map((e) => `${e.from_status}→${e.to_status}`);

  it('a video deleted while its job runs keeps nothing: no mp4, poster, thumbnail or storyboard in the store, no outputs rows', async () => {
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
    // It had stored them all (a 20 s clip gets a storyboard) before it found out.
    const job = await db().selectFrom('jobs').select('result').where('upload_id', '=', id).where('kind', '=', 'video').executeTakeFirstOrThrow();
    expect((job.result as { outputs: string[] }).outputs.sort()).toEqual(['mp4', 'poster', 'storyboard', 'thumbnail']);
    // Removed once the job's transaction committed (the job shows `done` a moment before).
    await eventually('its outputs to be removed', async () => ((await storedKeys(id)).length === 0 ? true : undefined), 60_000);
    expect(await outputRows(id)).toEqual([]);
  }, 240_000);

  it('removes a failed upload’s original after FAILED_RETENTION, not before, and keeps it failed with its reason', async () => {
    // An MP4 whose moov is gone: the video job fails the upload on its contents.
    const { url } = await tusUpload(server.url, await fs.readFile(await corruptMp4(samples)), { filename: 'broken.mp4', filetype: 'video/mp4' });
    const id = uploadIdOf(url);
    const failed = await waitUntilSettled(server.url, id, 60_000);
    expect(failed.status).toBe('failed');
    expect(await storedKeys(id)).toContain(id);

    const steps: string[] = [];
    const onUpload = ({ action, upload }: { action: string; upload: { id: string } }) => upload.id === id && steps.push(action);
    await cleanUpExpired(context(), { now: new Date(Date.now() + hour), onUpload });
    expect(steps).toEqual([]);
    expect(await storedKeys(id)).toContain(id);

    const totals = await cleanUpExpired(context(), { now: new Date(Date.now() + 3 * hour), onUpload });
    expect(steps).toEqual(['reclaimed']);
    expect(totals.reclaimed).toBeGreaterThanOrEqual(1);
    expect(await storedKeys(id)).toEqual([]);
    expect(await fetchStatus(server.url, id)).toMatchObject({ status: 'failed', reason: failed.reason });
    // Once: the next run does not look at it again.
    steps.length = 0;
    await cleanUpExpired(context(), { now: new Date(Date.now() + 4 * hour), onUpload });
    expect(steps).toEqual([]);
  }, 120_000);

  it('reclaims what a crash left of deleted, rejected and infected uploads, once they have settled for an interval', async () => {
    const ids: Record<string, string> = {};
    const clean = await tusUpload(server.url, pdf(5_000), { filename: 'to-delete.pdf' });
    ids.deleted = uploadIdOf(clean.url);
    await waitUntilSettled(server.url, ids.deleted);
    expect((await fetch(`${server.url}/api/uploads/${ids.deleted}`, { method: 'DELETE' })).status).toBe(204);
    const infected = await tusUpload(server.url, eicar(), { filename: 'notes.pdf', filetype: 'application/pdf' });
    ids.infected = uploadIdOf(infected.url);
    expect((await waitUntilSettled(server.url, ids.infected)).status).toBe('infected');
    // A PDF's bytes under a PNG's name: rejected from its first bytes (the client is refused).
    await expect(tusUpload(server.url, pdf(5_000), { filename: 'photo.png', filetype: 'image/png' })).rejects.toThrow();
    const rejected = await db().selectFrom('uploads').select('id').where('safe_filename', '=', 'photo.png').where('status', '=', 'rejected').executeTakeFirstOrThrow();
    ids.rejected = rejected.id;

    // What a crash between each transition and its removal would have left: the original, an output, and its row.
    for (const id of Object.values(ids)) {
      await leaveBehind(id);
      await leaveBehind(`outputs/${id}/thumbnail`);
      await db().insertInto('outputs').values({ upload_id: id, name: 'thumbnail', content_type: 'image/jpeg', size: 11, width: 1, height: 1, storage_key: `outputs/${id}/thumbnail` }).execute();
      expect((await storedKeys(id)).length).toBeGreaterThanOrEqual(2);
    }
    // Within the interval nothing is touched: a request may still be writing to them.
    await cleanUpExpired(context(), { now: new Date(Date.now() + 60_000) });
    for (const id of Object.values(ids)) expect(await storedKeys(id)).not.toEqual([]);

    const reclaimed: string[] = [];
    await cleanUpExpired(context(), { now: new Date(Date.now() + 2 * hour), onUpload: ({ action, upload }) => action === 'reclaimed' && reclaimed.push(upload.id) });
    expect(reclaimed).toEqual(expect.arrayContaining(Object.values(ids)));
    for (const [state, id] of Object.entries(ids)) {
      expect(await storedKeys(id), state).toEqual([]);
      expect(await outputRows(id), state).toEqual([]);
      expect((await fetchStatus(server.url, id)).status).toBe(state);
    }
  }, 120_000);

  it('finishes, at the next run, an upload whose bytes are complete but whose row still says uploading', async () => {
    const data = pdf(20_000);
    const { url } = await tusUpload(server.url, data, { filename: 'unrecorded.pdf' });
    const id = uploadIdOf(url);
    await waitUntilSettled(server.url, id);
    // The process died between storing the last byte and recording it: the row is as it was before.
    await db().deleteFrom('jobs').where('upload_id', '=', id).execute();
    await db()
      .updateTable('uploads')
      .set({ status: 'uploading', finished_at: null, ready_at: null, sha256: null, detected_type: null, expires_at: new Date(Date.now() + 24 * hour) })
      .where('id', '=', id)
      .execute();

    // Not expired (a day to go): received all the same, with no clock moved.
    const steps: string[] = [];
    await cleanUpExpired(context(), { onUpload: ({ action, upload }) => upload.id === id && steps.push(action) });
    expect(steps).toEqual(['received']);
    const status = await waitUntilSettled(server.url, id);
    expect(status).toMatchObject({ status: 'ready', size: data.length, scan: 'clean' });
    expect(status.finishedAt).not.toBeNull();
  }, 60_000);

  it('does so within one CLEANUP_INTERVAL on its own schedule', async () => {
    const quick = await startTestServer(environment, { CLEANUP_INTERVAL: '1s' });
    try {
      const { url } = await tusUpload(quick.url, pdf(3_000), { filename: 'scheduled.pdf' });
      const id = uploadIdOf(url);
      await waitUntilSettled(quick.url, id);
      await db().deleteFrom('jobs').where('upload_id', '=', id).execute();
      await db().updateTable('uploads').set({ status: 'uploading', finished_at: null, expires_at: new Date(Date.now() + 24 * hour) }).where('id', '=', id).execute();
      // Nothing but the schedule finishes it (CLEANUP_INTERVAL is otherwise 15 minutes).
      await eventually('the upload to be finished by the schedule', async () => (await fetchStatus(quick.url, id)).status !== 'uploading', 60_000, 100);
      expect((await waitUntilSettled(quick.url, id)).status).toBe('ready');
    } finally {
      await quick.close();
    }
  }, 60_000);
});
