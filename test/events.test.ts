import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../server/infra/settings/config.ts';
import type { RunningServer } from '../server/main/start.ts';
import type { UploadStatusJson as UploadStatusBody } from '../hooks/uploadStatusJson.ts';
import { openEventStream, type EventStreamClient, type ServerSentEvent } from './support/eventStream.ts';
import { cameraJpeg, makeSampleDir } from './support/imageSamples.ts';
import { killAll, startServerProcess, type ServerProcess } from './support/processes.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { request } from './support/tusRequests.ts';
import { h264Clip, makeSampleDir as makeVideoSampleDir, removeSampleDir as removeVideoSampleDir } from './support/videoSamples.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

type StatusEvent = UploadStatusBody & { transition?: { seq: number; from: string | null; to: string; reason: string | null } };
/** Each `event: status` with its `id:` as `eventId`. */
const statusEvents = (events: ServerSentEvent[]) => events.filter((e) => e.event === 'status').map((e) => ({ eventId: e.id, ...(JSON.parse(e.data) as StatusEvent) }));
const progressEvents = (events: ServerSentEvent[]) =>
  events.filter((e) => e.event === 'progress').map((e) => ({ eventId: e.id, ...(JSON.parse(e.data) as { offset?: number; size?: number; percent?: number }) }));

/** Creates an upload of `size` bytes on `baseUrl` with a plain tus POST; returns its URL. */
async function createUpload(baseUrl: string, size: number, filename: string, token: string, type = 'image/jpeg'): Promise<string> {
  const res = await request(`${baseUrl}/files/`, 'POST', {
    'Upload-Length': size,
    'Upload-Metadata': `filename ${Buffer.from(filename).toString('base64')},filetype ${Buffer.from(type).toString('base64')}`,
    ...bearer(token),
  });
  if (res.status !== 201 || !res.headers.location) throw new Error(`creating the upload: ${res.status} ${res.text}`);
  return res.headers.location;
}

describe('EVENTS_HEARTBEAT', () => {
  it('takes a duration with a unit, at least 100ms, and names itself when it is wrong', () => {
    expect(loadConfig({ EVENTS_HEARTBEAT: '2s' }).eventsHeartbeatMs).toBe(2000);
    expect(loadConfig({}).eventsHeartbeatMs).toBe(15_000);
    expect(() => loadConfig({ EVENTS_HEARTBEAT: '50ms' })).toThrow(/EVENTS_HEARTBEAT: must be at least 100ms/);
    expect(() => loadConfig({ EVENTS_HEARTBEAT: '15' })).toThrow(/EVENTS_HEARTBEAT: "15" has no unit/);
  });
});

/**
 * GET /api/uploads/:id/events across instances: two servers share Postgres and S3 (scale-out);
 * the stream is held by an in-process server that runs no jobs, the upload goes to (and is
 * processed by) a server in a child process, so everything the stream tells came through
 * Postgres' NOTIFY and the event log.
 */
describe('upload event stream (SSE)', () => {
  let environment: TestEnvironment;
  let watcher: RunningServer;
  let uploader: ServerProcess;
  let samples: { dir: string; cleanup: () => Promise<void> };
  let photo: Buffer;
  let alice: string;
  let bob: string;

  beforeAll(async () => {
    environment = await createTestEnvironment('scaleout', { AUTH_SECRET: testAuthSecret });
    // A short heartbeat so a test sees several; the default is 15 s.
    watcher = await startTestServer(environment, { RUN_JOBS: 'false', EVENTS_HEARTBEAT: '300ms' });
    uploader = await startServerProcess(environment.env);
    samples = await makeSampleDir();
    photo = await readFile(await cameraJpeg(samples.dir, 1600, 1200));
    alice = await mintToken('alice');
    bob = await mintToken('bob');
  });
  afterAll(async () => {
    await watcher?.close();
    await killAll();
    await environment?.destroy();
    await samples?.cleanup();
  });

  let uploadId: string;
  let firstStream: EventStreamClient;

  it('tells one instance every transition up to ready while the upload is sent to and processed by another', { timeout: 120_000 }, async () => {
    const uploadUrl = await createUpload(uploader.url, photo.length, 'photo.jpg', alice);
    uploadId = uploadIdOf(uploadUrl);
    const stream = await openEventStream(`${watcher.url}/api/uploads/${uploadId}/events`, bearer(alice));
    firstStream = stream;
    expect(stream.status).toBe(200);
    expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(stream.headers['cache-control']).toBe('no-store');

    // The status now, at once: uploading, nothing received yet; its id is the creation's event.
    const [first] = await stream.waitFor('the first status', (events) => events.length > 0);
    expect(first!.event).toBe('status');
    expect(first!.id).toBe('1');
    expect(JSON.parse(first!.data)).toMatchObject({ id: uploadId, status: 'uploading', offset: 0, size: photo.length, owner: 'alice' });

    // Four PATCHes with pauses (more than a heartbeat apart), all to the other instance.
    await tusUpload(uploader.url, photo, { uploadUrl, chunkSize: Math.ceil(photo.length / 4), headers: bearer(alice), pauseBeforeEachRequestMs: 400 });
    await stream.ended;

    const statuses = statusEvents(stream.events);
    expect(statuses.map((s) => s.transition?.to ?? s.status)).toEqual(['uploading', 'received', 'inspecting', 'processing', 'ready']);
    // `id:` is the event's sequence number: 1 (creation) then one more per transition.
    expect(statuses.map((s) => s.eventId)).toEqual(['1', '2', '3', '4', '5']);
    expect(statuses.slice(1).map((s) => s.transition!.seq)).toEqual([2, 3, 4, 5]);
    const ready = statuses.at(-1)!;
    expect(ready).toMatchObject({ status: 'ready', detectedType: 'image/jpeg', sha256: expect.any(String) });
    expect(ready.outputs.map((o) => o.name).sort()).toEqual(['resized', 'thumbnail', 'webp']);
    expect(ready.outputs.every((o) => o.url && new URL(o.url).searchParams.get('sig'))).toBe(true);

    // Progress while uploading, without an id, offsets growing to the size; none after `received`.
    const progress = progressEvents(stream.events);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.every((p) => p.eventId === undefined && p.size === photo.length)).toBe(true);
    const offsets = progress.map((p) => p.offset!);
    expect([...offsets].sort((a, b) => a - b)).toEqual(offsets);
    expect(offsets.at(-1)).toBeLessThanOrEqual(photo.length);
    const receivedAt = stream.events.findIndex((e) => e.event === 'status' && JSON.parse(e.data).transition?.to === 'received');
    expect(stream.events.slice(receivedAt).some((e) => e.event === 'progress')).toBe(false);
    // Heartbeats between the paused PATCHes and during processing.
    expect(stream.comments.filter((c) => c === 'heartbeat').length).toBeGreaterThan(0);
  });

  it('resumes from Last-Event-ID with the events after it, and tells a client past the end to stop (204)', async () => {
    const resumed = await openEventStream(`${watcher.url}/api/uploads/${uploadId}/events`, { ...bearer(alice), 'Last-Event-ID': '2' });
    expect(resumed.status).toBe(200);
    await resumed.ended;
    expect(statusEvents(resumed.events).map((s) => [s.eventId, s.transition?.to])).toEqual([['3', 'inspecting'], ['4', 'processing'], ['5', 'ready']]);

    // EventSource reconnects after every end: at the last event it is told 204, which stops it.
    const atEnd = await openEventStream(`${watcher.url}/api/uploads/${uploadId}/events`, { ...bearer(alice), 'Last-Event-ID': '5' });
    expect(atEnd.status).toBe(204);
    // A new EventSource cannot set the header: ?lastEventId= does the same.
    const byQuery = await openEventStream(`${watcher.url}/api/uploads/${uploadId}/events?lastEventId=4`, bearer(alice));
    await byQuery.ended;
    expect(statusEvents(byQuery.events).map((s) => s.eventId)).toEqual(['5']);

    const bad = await fetch(`${watcher.url}/api/uploads/${uploadId}/events`, { headers: { ...bearer(alice), 'Last-Event-ID': 'five' } });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatch(/Last-Event-ID/);
    // Without Last-Event-ID the status now is told (ready) and the stream ends.
    const fresh = await openEventStream(`${watcher.url}/api/uploads/${uploadId}/events`, bearer(alice));
    await fresh.ended;
    expect(statusEvents(fresh.events).map((s) => [s.eventId, s.status])).toEqual([['5', 'ready']]);
    expect(firstStream.isEnded()).toBe(true);
  });

  it("tells a video job's progress in percent while it runs, then its poster once ready", { timeout: 180_000 }, async () => {
    const dir = await makeVideoSampleDir();
    try {
      const clip = await readFile(await h264Clip(dir, { seconds: 10, width: 1280, height: 720 }));
      const uploadUrl = await createUpload(uploader.url, clip.length, 'clip.mp4', alice, 'video/mp4');
      const stream = await openEventStream(`${watcher.url}/api/uploads/${uploadIdOf(uploadUrl)}/events`, bearer(alice));
      await tusUpload(uploader.url, clip, { uploadUrl, headers: bearer(alice) });
      await stream.ended;
      const statuses = statusEvents(stream.events);
      expect(statuses.at(-1)).toMatchObject({ status: 'ready', detectedType: 'video/mp4' });
      expect(statuses.at(-1)!.outputs.map((o) => o.name).sort()).toEqual(['mp4', 'poster', 'thumbnail']);
      // Percent events come between `processing` and `ready`, growing, without an id.
      const processingAt = stream.events.findIndex((e) => e.event === 'status' && JSON.parse(e.data).transition?.to === 'processing');
      const readyAt = stream.events.findIndex((e) => e.event === 'status' && JSON.parse(e.data).transition?.to === 'ready');
      const percents = progressEvents(stream.events.slice(processingAt, readyAt)).map((p) => p.percent);
      expect(percents.length).toBeGreaterThanOrEqual(1);
      expect(percents.every((p) => typeof p === 'number' && p >= 0 && p <= 100)).toBe(true);
      expect([...percents].sort((a, b) => a! - b!)).toEqual(percents);
      expect(progressEvents(stream.events).filter((p) => p.percent !== undefined)).toHaveLength(percents.length);
    } finally {
      await removeVideoSampleDir(dir);
    }
  });

  it("answers another owner's upload exactly as an unknown one, and asks for a token", async () => {
    const theirs = await fetch(`${watcher.url}/api/uploads/${uploadId}/events`, { headers: bearer(bob) });
    const unknownId = `${uploadId.slice(0, -4)}0000`;
    const unknown = await fetch(`${watcher.url}/api/uploads/${unknownId}/events`, { headers: bearer(bob) });
    expect(theirs.status).toBe(404);
    expect(unknown.status).toBe(404);
    expect((await theirs.json()).error).toBe(`no upload ${uploadId}`);
    expect((await unknown.json()).error).toBe(`no upload ${unknownId}`);
    const anonymous = await fetch(`${watcher.url}/api/uploads/${uploadId}/events`);
    expect(anonymous.status).toBe(401);
    // HEAD answers at once, without a stream behind it.
    const head = await fetch(`${watcher.url}/api/uploads/${uploadId}/events`, { method: 'HEAD', headers: bearer(alice) });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect((await fetch(`${watcher.url}/api/uploads/${uploadId}/events`, { method: 'HEAD', headers: bearer(bob) })).status).toBe(404);
  });

  it('opens the stream from links.events without a header; the link opens nothing else', async () => {
    const status = await fetchStatus(watcher.url, uploadId, bearer(alice));
    const link = new URL(status.links.events);
    expect(link.pathname).toBe(`/api/uploads/${uploadId}/events`);
    expect(link.searchParams.get('sig')).toBeTruthy();

    const stream = await openEventStream(link.href);
    expect(stream.status).toBe(200);
    await stream.ended;
    expect(statusEvents(stream.events).map((s) => s.status)).toEqual(['ready']);

    const tampered = new URL(link);
    tampered.searchParams.set('sig', `${link.searchParams.get('sig')!.slice(0, -2)}AA`);
    expect((await fetch(tampered)).status).toBe(403);
    // Not a download: the same signature on the files route opens nothing.
    const asDownload = new URL(link);
    asDownload.pathname = `/api/uploads/${uploadId}/files/events`;
    expect((await fetch(asDownload)).status).toBe(404);
    // A download link's signature does not open the stream.
    const thumbnail = new URL(status.outputs.find((o) => o.name === 'thumbnail')!.url!);
    expect((await fetch(thumbnail)).status).toBe(200);
    const withDownloadSig = new URL(link);
    withDownloadSig.search = thumbnail.search;
    expect((await fetch(withDownloadSig)).status).toBe(403);
    // Nor does it open another upload's stream.
    const other = await tusUpload(uploader.url, photo.subarray(0, 1000), { filename: 'other.jpg', filetype: 'image/jpeg', headers: bearer(alice) });
    const otherLink = new URL(link);
    otherLink.pathname = `/api/uploads/${uploadIdOf(other.url)}/events`;
    expect((await fetch(otherLink)).status).toBe(403);
    await waitUntilSettled(watcher.url, uploadIdOf(other.url), 60_000, bearer(alice));
  });

  it('ends open streams at once when the instance stops, not after SHUTDOWN_GRACE', { timeout: 90_000 }, async () => {
    // A grace far past the test's own timeout: a close that waited for it would fail the test.
    const second = await startTestServer(environment, { RUN_JOBS: 'false', SHUTDOWN_GRACE: '1h' });
    const uploadUrl = await createUpload(uploader.url, photo.length, 'pending.jpg', alice);
    const streams = await Promise.all([1, 2, 3].map(() => openEventStream(`${second.url}/api/uploads/${uploadIdOf(uploadUrl)}/events`, bearer(alice))));
    await Promise.all(streams.map((s) => s.waitFor('the first status', (events) => events.length > 0)));
    // One client goes away by itself first.
    streams[0]!.close();
    await sleep(100);
    await second.close();
    await Promise.all(streams.map((s) => s.ended));
    expect(streams.slice(1).every((s) => s.isEnded())).toBe(true);
  });
});
