import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { runCommandScript } from './support/commands.ts';
import { eventually } from './support/eventually.ts';
import { pdf, png } from './support/samples.ts';
import { testS3Client } from './services/env.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

/**
 * `npm run cleanup` / `npm run requeue` as child processes: what those scripts run, without npm's
 * start-up. Against the scale-out setup, as the embedded database cannot be opened by two processes.
 */
describe('maintenance commands', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  const s3 = testS3Client();

  const command = (script: 'server/main/cleanup.ts' | 'server/main/requeue.ts', args: string[]) => runCommandScript(script, args, environment.env);
  const cleanup = (args: string[] = []) => command('server/main/cleanup.ts', args);
  const requeue = (args: string[]) => command('server/main/requeue.ts', args);

  /** A finished upload, ready; its id. */
  async function readyUpload(name: string): Promise<string> {
    const id = uploadIdOf((await tusUpload(server.url, pdf(2048), { filename: name })).url);
    expect((await waitUntilSettled(server.url, id)).status).toBe('ready');
    return id;
  }

  /** As a job out of attempts leaves it (e.g. while clamd was down): the job and the upload failed. */
  async function failInspection(id: string): Promise<void> {
    const { db } = server.services.context;
    await db.updateTable('jobs').set({ status: 'failed', last_error: 'clamd unreachable' }).where('upload_id', '=', id).where('kind', '=', 'inspect').execute();
    await db.updateTable('uploads').set({ status: 'failed', reason: 'inspect: clamd unreachable' }).where('id', '=', id).execute();
  }

  const storedObjects = async (id: string) =>
    ((await s3.send(new ListObjectsV2Command({ Bucket: environment.env.S3_BUCKET!, Prefix: id }))).Contents ?? []).map((o) => o.Key);
  const removeOriginal = (id: string) => s3.send(new DeleteObjectCommand({ Bucket: environment.env.S3_BUCKET!, Key: id }));

  beforeAll(async () => {
    // Cleanup runs by hand here: the server's own schedule (at start, then hourly) must not race it.
    environment = await createTestEnvironment('scaleout', { UPLOAD_EXPIRES_AFTER: '2s', CLEANUP_INTERVAL: '1h' });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
    s3.destroy();
  });

  it('cleanup --dry-run lists an expired upload and leaves it; cleanup then expires it', async () => {
    const partial = await tusUpload(server.url, pdf(200_000), { filename: 'partial.pdf', chunkSize: 50_000, abortAfterBytes: 50_000 });
    const id = uploadIdOf(partial.url);
    await new Promise((r) => setTimeout(r, 2500));

    const dry = await cleanup(['--dry-run']);
    expect(dry, dry.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(dry.lines).toContainEqual(expect.objectContaining({ action: 'expired', id, filename: 'partial.pdf', dryRun: true }));
    expect(dry.lines.at(-1)).toMatchObject({ expired: 1, received: 0, dryRun: true });
    expect((await fetchStatus(server.url, id)).status).toBe('uploading');
    expect(await storedObjects(id), 'a dry run keeps the bytes').not.toEqual([]);

    const real = await cleanup();
    expect(real, real.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(real.lines).toContainEqual(expect.objectContaining({ action: 'expired', id, dryRun: false }));
    expect(real.lines.at(-1)).toMatchObject({ expired: 1, dryRun: false });
    expect(await fetchStatus(server.url, id)).toMatchObject({ status: 'expired', reason: expect.stringContaining('not finished before') });
    expect(await storedObjects(id)).toEqual([]);

    expect((await cleanup()).lines, 'nothing left to do').toEqual([{ expired: 0, received: 0, reclaimed: 0, parts: 0, swept: 0, keys: 0, tempFiles: expect.any(Number), uploadRows: 0, webhookRows: 0, jobRows: 0, eventRows: 0, dryRun: false }]);
  });

  it('requeue <id> runs a failed inspection again with fresh attempts, and the upload becomes ready', async () => {
    const id = await readyUpload('retry.pdf');
    await failInspection(id);

    const run = await requeue([id]);
    expect(run, run.stderr).toMatchObject({ code: 0, stderr: '', lines: [{ id, requeued: true, job: 'inspect', status: 'received' }] });
    const settled = await waitUntilSettled(server.url, id);
    expect(settled).toMatchObject({ status: 'ready', reason: null });
    const job = await server.services.context.db.selectFrom('jobs').selectAll().where('upload_id', '=', id).where('kind', '=', 'inspect').executeTakeFirstOrThrow();
    // One attempt before, one after: the requeued job had all of JOB_MAX_ATTEMPTS again.
    expect(job).toMatchObject({ status: 'done', attempts: 2, max_attempts: 1 + server.services.context.config.jobMaxAttempts });
  });

  it('requeue refuses, with a reason and exit code 1, an upload whose bytes are gone or that is not failed', async () => {
    const gone = await readyUpload('gone.pdf');
    await failInspection(gone);
    await removeOriginal(gone);
    const ready = await readyUpload('fine.pdf');

    const run = await requeue([gone, ready]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.lines).toEqual([
      { id: gone, requeued: false, reason: expect.stringContaining('bytes are gone') },
      { id: ready, requeued: false, reason: 'upload is ready, not failed' },
    ]);
    expect(await fetchStatus(server.url, gone)).toMatchObject({ status: 'failed', reason: 'inspect: clamd unreachable' });
    expect((await fetchStatus(server.url, ready)).status).toBe('ready');
  });

  it('requeue --status failed requeues every failed upload that can run again and names the others', async () => {
    const first = await readyUpload('one.pdf');
    const second = await readyUpload('two.pdf');
    await failInspection(first);
    await failInspection(second);

    const run = await requeue(['--status', 'failed']);
    // The upload whose bytes were removed in the test before is still failed, and refused again.
    expect(run.code).toBe(1);
    expect(run.lines.filter((line) => line.requeued).map((line) => line.id).sort()).toEqual([first, second].sort());
    expect(run.lines.filter((line) => !line.requeued)).toEqual([expect.objectContaining({ reason: expect.stringContaining('bytes are gone') })]);
    expect((await waitUntilSettled(server.url, first)).status).toBe('ready');
    expect((await waitUntilSettled(server.url, second)).status).toBe('ready');
  });

  it('refuses bad arguments with the usage and exit code 2', async () => {
    for (const args of [[], ['--status', 'ready'], ['--status', 'failed', 'some-id']]) {
      const run = await requeue(args);
      expect(run.code, JSON.stringify(args)).toBe(2);
      expect(run.stderr).toContain('usage: npm run requeue');
    }
    const run = await cleanup(['--force']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('usage: npm run cleanup');
  });
});

/**
 * `npm run requeue -- --outputs thumbhash` on the embedded setup (folder store, no scanning): the
 * embedded database takes one process at a time, so the command runs while the server is stopped,
 * and the server started again runs the job.
 */
describe('requeue --outputs thumbhash: an image ready before placeholders gets its thumbhash', () => {
  let environment: TestEnvironment;
  let server: RunningServer | undefined;
  const requeue = (args: string[]) => runCommandScript('server/main/requeue.ts', args, environment.env);
  const stop = async () => {
    await server?.close();
    server = undefined;
  };

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded', { SCAN: 'off' });
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  it('runs the image job again; the thumbhash comes back and the upload stays ready', async () => {
    server = await startTestServer(environment);
    const id = uploadIdOf((await tusUpload(server.url, png(160, 120), { filename: 'old.png', filetype: 'image/png' })).url);
    const before = await waitUntilSettled(server.url, id);
    expect(before.status).toBe('ready');
    const thumbhash = (before.media as { thumbhash?: unknown } | null)?.thumbhash;
    expect(thumbhash).toMatchObject({ hash: expect.any(String) });
    const outputNames = before.outputs.map((o) => o.name).sort();
    // As an upload made ready before thumbhashes existed: its media without one.
    await server.services.context.db.updateTable('uploads').set({ media: sql`media - 'thumbhash'` }).where('id', '=', id).execute();
    expect((await fetchStatus(server.url, id)).media).not.toHaveProperty('thumbhash');
    await stop();

    const run = await requeue(['--outputs', 'thumbhash', id]);
    expect(run, run.stderr).toMatchObject({ code: 0, lines: [{ id, requeued: true, job: 'image', status: 'ready', adding: ['thumbhash'] }] });

    server = await startTestServer(environment);
    const after = await eventually('the thumbhash back', async () => {
      const status = await fetchStatus(server!.url, id);
      expect(status.status).toBe('ready');
      return (status.media as { thumbhash?: unknown } | null)?.thumbhash !== undefined && status;
    }, 30_000, 200);
    expect((after.media as { thumbhash?: unknown }).thumbhash).toEqual(thumbhash);
    expect(after.outputs.map((o) => o.name).sort()).toEqual(outputNames);
    expect((await fetch(after.outputs.find((o) => o.name === 'thumbnail')!.url!)).status).toBe(200);
    await stop();

    // Asked again: it has one now, and video outputs are not an image's to get.
    const again = await requeue(['--outputs', 'thumbhash,hls,storyboard', id]);
    expect(again).toMatchObject({ code: 1, lines: [{ id, requeued: false, reason: expect.stringContaining('nothing to add: it has resized, thumbhash, thumbnail, webp') }] });
  });
});
