import { randomUUID } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statesInto, transitions, UploadLifecycle, type InTransition, type UploadEvent } from '../hooks/uploadLifecycle.ts';
import { uploadStatusJson } from '../hooks/uploadStatusJson.ts';
import { migrateToLatest, openDatabase, type Db, type OpenDatabase } from '../server/infra/db/database.ts';
import { findUpload, saveOutputs } from '../server/infra/db/records.ts';
import { uploadStatuses, type UploadStatus } from '../server/infra/db/schema.ts';
import { createPart, findPart } from '../server/infra/db/uploadParts.ts';
import { statusesWhere, uploadStatusFacts } from '../server/infra/db/uploadStatusFacts.ts';
import { listUploadEvents, uploadEventsChannel } from '../server/infra/db/uploadStates.ts';
import { createLogger } from '../server/infra/settings/log.ts';
import { eventually } from './support/eventually.ts';
import { createTestDatabase } from './support/testServer.ts';

const log = createLogger('silent');
const offLine: UploadStatus[] = ['rejected', 'infected', 'failed', 'expired', 'deleted'];
const allowed = uploadStatuses.flatMap((from) => Object.keys(transitions[from]).map((to) => [from, to as UploadStatus] as const));
const notAllowed = uploadStatuses.flatMap((from) => uploadStatuses.filter((to) => !(to in transitions[from])).map((to) => [from, to] as const));

describe('upload lifecycle', () => {
  let database: OpenDatabase;
  let drop: () => Promise<void>;
  let url: string;
  const lifecycle = new UploadLifecycle();
  const db = () => database.db;

  beforeAll(async () => {
    const testDb = await createTestDatabase();
    url = testDb.url;
    drop = testDb.drop;
    database = await openDatabase({ databaseUrl: url, dataDir: os.tmpdir(), embeddedPostgresUser: 'nobody' }, log);
    await migrateToLatest(database.db);
  });
  afterAll(async () => {
    await database?.close();
    await drop?.();
  });

  const newId = () => randomUUID().replaceAll('-', '');

  /** A new upload through the lifecycle (event 1), then moved to `status` along edges of the table. */
  async function uploadIn(status: UploadStatus, on: UploadLifecycle = lifecycle): Promise<string> {
    const id = newId();
    const created = await on.create(db(), { id, safe_filename: 'a.png', storage_key: id, tus_metadata: '{}', size: 10, expires_at: new Date(Date.now() + 3_600_000) });
    expect(created.ok).toBe(true);
    for (const step of pathTo(status)) {
      const moved = await on.move(db(), id, step.to, { from: [step.from], ...(offLine.includes(step.to) ? { reason: `to ${step.to}` } : {}) });
      expect(moved.ok).toBe(true);
    }
    return id;
  }

  function pathTo(status: UploadStatus): { from: UploadStatus; to: UploadStatus }[] {
    const line: UploadStatus[] = ['uploading', 'received', 'inspecting', 'processing', 'ready'];
    if (line.includes(status)) return line.slice(1, line.indexOf(status) + 1).map((to, i) => ({ from: line[i]!, to }));
    const via: Record<string, UploadStatus> = { rejected: 'inspecting', infected: 'inspecting', failed: 'processing', expired: 'uploading', deleted: 'ready' };
    return [...pathTo(via[status]!), { from: via[status]!, to: status }];
  }

  const reasonFor = (to: UploadStatus) => (offLine.includes(to) ? { reason: `why ${to}` } : {});

  it.each(allowed)('moves %s → %s with its event', async (from, to) => {
    const id = await uploadIn(from);
    const before = await listUploadEvents(db(), id);
    const moved = await lifecycle.move(db(), id, to, { from: [from], ...reasonFor(to) });
    expect(moved.ok).toBe(true);
    if (!moved.ok) return;
    const reason = offLine.includes(to) ? `why ${to}` : null;
    expect(moved.upload).toMatchObject({ id, status: to, reason, event_seq: before.length + 1 });
    expect(moved.event).toMatchObject({ uploadId: id, seq: before.length + 1, from, to, reason });
    const events = await listUploadEvents(db(), id);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: before.length + 1 }, (_, i) => i + 1));
    expect(events.at(-1)).toMatchObject({ from_status: from, to_status: to, reason });
    expect(await findUpload(db(), id)).toMatchObject({ status: to, reason });
  });

  it.each(notAllowed)('does not have %s → %s in its table: asking for it is a mistake that throws', async (from, to) => {
    await expect(lifecycle.move(db(), newId(), to, { from: [from], ...reasonFor(to) })).rejects.toThrow(`cannot go from ${from} to ${to}`);
  });

  it.each(uploadStatuses.filter((to) => statesInto(to).length > 0))('refuses a move into %s from every state the table has no edge from, changing nothing', async (to) => {
    for (const state of uploadStatuses.filter((s) => !statesInto(to).includes(s))) {
      const id = await uploadIn(state);
      const before = await findUpload(db(), id);
      for (const from of statesInto(to)) {
        expect(await lifecycle.move(db(), id, to, { from: [from], ...reasonFor(to) })).toEqual({ ok: false, current: before });
      }
      expect(await findUpload(db(), id)).toEqual(before);
      expect((await listUploadEvents(db(), id)).length).toBe(before!.event_seq);
    }
  });

  it('agrees with the per-state facts: a state a pipeline job works in can fail, and bytes once gone never come back', () => {
    expect(statusesWhere((facts) => facts.awaitsJob).filter((state) => !('failed' in transitions[state]))).toEqual([]);
    const keepsNothing = statusesWhere((facts) => !facts.keepsBytes);
    expect(keepsNothing.flatMap((from) => Object.keys(transitions[from]).filter((to) => uploadStatusFacts[to as UploadStatus].keepsBytes))).toEqual([]);
  });

  it('refuses a move of an upload that does not exist', async () => {
    expect(await lifecycle.move(db(), newId(), 'deleted', { reason: 'gone' })).toEqual({ ok: false, current: undefined });
  });

  it('wants a reason exactly for the states off the main line', async () => {
    const id = await uploadIn('inspecting');
    await expect(lifecycle.move(db(), id, 'rejected', { from: ['inspecting'] })).rejects.toThrow('needs reason');
    await expect(lifecycle.move(db(), id, 'ready', { from: ['inspecting'], reason: 'because' })).rejects.toThrow('takes no reason');
    expect((await findUpload(db(), id))?.status).toBe('inspecting');
  });

  it('clears the reason back on the main line (a requeued failed upload)', async () => {
    const id = await uploadIn('failed');
    expect((await findUpload(db(), id))?.reason).toBe('to failed');
    const back = await lifecycle.move(db(), id, 'processing', { from: ['failed'] });
    expect(back.ok && back.upload.reason).toBeNull();
  });

  it('records the creation as event 1, null → uploading, and numbers each transition after it', async () => {
    const id = await uploadIn('ready');
    const events = await listUploadEvents(db(), id);
    expect(events.map((e) => [e.seq, e.from_status, e.to_status])).toEqual([
      [1, null, 'uploading'],
      [2, 'uploading', 'received'],
      [3, 'received', 'inspecting'],
      [4, 'inspecting', 'processing'],
      [5, 'processing', 'ready'],
    ]);
    expect(events.every((e) => e.at instanceof Date)).toBe(true);
    expect(await listUploadEvents(db(), id, 3)).toHaveLength(2);
  });

  it('stamps finished_at (and stops the expiry) on received, ready_at on ready, and records the facts given', async () => {
    const id = await uploadIn('uploading');
    const created = await findUpload(db(), id);
    expect(created).toMatchObject({ finished_at: null, ready_at: null });
    expect(created!.expires_at).not.toBeNull();
    const received = await lifecycle.move(db(), id, 'received', { from: ['uploading'], facts: { size: 1234, offset: 1234 } });
    expect(received.ok && received.upload).toMatchObject({ size: 1234, offset: 1234, expires_at: null, ready_at: null });
    expect(received.ok && received.upload.finished_at).toBeInstanceOf(Date);
    await lifecycle.move(db(), id, 'inspecting', { from: ['received'] });
    const inspected = await lifecycle.move(db(), id, 'processing', { from: ['inspecting'], facts: { sha256: 'ab'.repeat(32), detected_type: 'image/png' } });
    expect(inspected.ok && inspected.upload).toMatchObject({ sha256: 'ab'.repeat(32), detected_type: 'image/png', ready_at: null });
    const ready = await lifecycle.move(db(), id, 'ready', { from: ['processing'], facts: { media: { width: 3, height: 2 } } });
    expect(ready.ok && ready.upload).toMatchObject({ media: { width: 3, height: 2 } });
    expect(ready.ok && ready.upload.ready_at!.getTime()).toBeGreaterThanOrEqual(received.ok ? received.upload.finished_at!.getTime() : Infinity);
  });

  it('refuses to move from states that stamp differently in one statement', async () => {
    await expect(lifecycle.move(db(), newId(), 'received', {})).rejects.toThrow('stamp different times');
  });

  it('gives racing transitions of one upload one winner each step, and seqs without gaps or repeats', async () => {
    const id = await uploadIn('processing');
    const moves = await Promise.all([
      ...Array.from({ length: 4 }, () => lifecycle.move(db(), id, 'ready', { from: ['processing'] })),
      ...Array.from({ length: 4 }, () => lifecycle.move(db(), id, 'deleted', { reason: 'race' })),
    ]);
    const made = moves.filter((m) => m.ok);
    // At most one `ready` and exactly one `deleted`: each from-state is left once.
    expect(made.filter((m) => m.upload.status === 'deleted')).toHaveLength(1);
    expect(made.filter((m) => m.upload.status === 'ready').length).toBeLessThanOrEqual(1);
    const events = await listUploadEvents(db(), id);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, ...made.map((_, i) => 5 + i)]);
    // Each event's `from` is the state the one before it moved to.
    for (let i = 1; i < events.length; i++) expect(events[i]!.from_status).toBe(events[i - 1]!.to_status);
    expect((await findUpload(db(), id))?.status).toBe('deleted');
  });

  it('NOTIFYs each transition to a LISTENing client once it commits, with the id and seq only', async () => {
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => n.channel === uploadEventsChannel && heard.push(n.payload!));
    await listener.query(`listen ${uploadEventsChannel}`);
    try {
      const id = await uploadIn('uploading');
      await lifecycle.move(db(), id, 'received', { from: ['uploading'] });
      await eventually('both notifications', async () => heard.filter((p) => p.includes(id)).length === 2);
      expect(heard.filter((p) => p.includes(id))).toEqual([`{"id":"${id}","seq":1}`, `{"id":"${id}","seq":2}`]);
      expect(JSON.parse(heard.at(-1)!)).toEqual({ id, seq: 2 });

      // Rolled back: no event, no notification, no change.
      await expect(
        lifecycle.move(db(), id, 'inspecting', {
          from: ['received'],
          with: async () => {
            throw new Error('the caller changed its mind');
          },
        }),
      ).rejects.toThrow('changed its mind');
      await lifecycle.move(db(), id, 'deleted', { reason: 'after the rollback' });
      await eventually('the delete notification', async () => heard.some((p) => p === `{"id":"${id}","seq":3}`));
      expect(heard.filter((p) => p.includes(id))).toHaveLength(3);
      expect((await listUploadEvents(db(), id)).map((e) => e.to_status)).toEqual(['uploading', 'received', 'deleted']);
    } finally {
      await listener.end();
    }
  });

  it('runs its extensions in the transition transaction, after the caller’s own statements, seeing the status JSON of that moment', async () => {
    const seen: { event: UploadEvent; json: Awaited<ReturnType<typeof uploadStatusJson>> }[] = [];
    const extension: InTransition = async (trx, event, upload) => {
      seen.push({ event, json: await uploadStatusJson(trx, upload, { base: 'https://uploads.example' }) });
    };
    const extended = new UploadLifecycle([extension]);
    const id = await uploadIn('processing', extended);
    expect(seen.map((s) => s.event.seq)).toEqual([1, 2, 3, 4]);
    const outputs = [{ name: 'thumbnail', contentType: 'image/jpeg', size: 5, width: 1, height: 1, storageKey: `outputs/${id}/thumbnail` }];
    await extended.move(db(), id, 'ready', { from: ['processing'], with: (trx: Db) => saveOutputs(trx, id, outputs) });
    expect(seen.at(-1)!.json).toMatchObject({
      status: 'ready',
      outputs: [{ name: 'thumbnail', url: `https://uploads.example/api/uploads/${id}/files/thumbnail` }],
      links: { self: `https://uploads.example/api/uploads/${id}`, original: `https://uploads.example/api/uploads/${id}/files/original` },
    });

    // An extension that fails undoes the transition with it: an event is never recorded without what hangs on it.
    const failing = new UploadLifecycle([
      async () => {
        throw new Error('could not enqueue');
      },
    ]);
    await expect(failing.move(db(), id, 'deleted', { reason: 'try' })).rejects.toThrow('could not enqueue');
    expect((await findUpload(db(), id))?.status).toBe('ready');
    expect(await listUploadEvents(db(), id)).toHaveLength(5);
  });
  it('creates a final with its partial uploads in one transaction: all of them or none, with the quota', async () => {
    const expires_at = new Date(Date.now() + 3_600_000);
    const parts = [newId(), newId()];
    for (const id of parts) await createPart(db(), { id, owner: 'carol', size: 5, expires_at });
    const final = (id: string) => ({ id, owner: 'carol', safe_filename: 'a.png', storage_key: id, tus_metadata: '{}', size: 10, expires_at, upload_concat: 'final;x' });
    const quota = { uploadsInFlight: 1, bytes: 100 };

    // Two finals race for the same parts: one takes both, the other is told and writes nothing.
    const [a, b] = [newId(), newId()];
    const results = await Promise.all([lifecycle.create(db(), final(a), quota, parts), lifecycle.create(db(), final(b), quota, parts)]);
    expect(results.map((r) => (r.ok ? 'made' : r.refused)).sort()).toEqual(['made', 'parts taken']);
    const winner = results[0]!.ok ? a : b;
    const loser = winner === a ? b : a;
    expect((await Promise.all(parts.map((id) => findPart(db(), id)))).map((part) => part?.final_id)).toEqual([winner, winner]);
    expect(await findUpload(db(), loser)).toBeUndefined();
    expect(await listUploadEvents(db(), loser)).toEqual([]);
    expect((await listUploadEvents(db(), winner)).map((e) => e.to_status)).toEqual(['uploading']);

    // One part already taken: the other is not claimed either.
    const free = newId();
    await createPart(db(), { id: free, owner: 'carol', size: 5, expires_at });
    const third = newId();
    const refused = await lifecycle.create(db(), final(third), undefined, [free, parts[0]!]);
    expect(refused.ok || refused.refused).toBe('parts taken');
    expect((await findPart(db(), free))?.final_id).toBeNull();
    expect(await findUpload(db(), third)).toBeUndefined();
  });
});
