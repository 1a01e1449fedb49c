import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../server/infra/db/database.ts';
import { pruneUploadRates } from '../server/infra/db/uploadRates.ts';
import type { RunningServer } from '../server/main/start.ts';
import { createTestEnvironment, setups, startTestServer, type Setup, type TestEnvironment } from './support/testServer.ts';

/** The upload rate limit over raw tus requests: creations are counted per address in the database. */

const V = '1.0.0';
const pngUpload = { 'Upload-Length': '10', 'Upload-Metadata': `filename ${Buffer.from('photo.png').toString('base64')},filetype ${Buffer.from('image/png').toString('base64')}` };

function request(url: string, method: string, headers: Record<string, string> = {}, body?: Buffer): Promise<Response> {
  return fetch(url, { method, headers: { 'Tus-Resumable': V, ...headers }, body: body && new Uint8Array(body) });
}

/** POST /files/ for a new 10-byte upload; the Location is absolute. */
const create = (base: string) => request(`${base}/files/`, 'POST', pngUpload);

/** Creates `count` uploads one after another and returns their status codes. */
async function createMany(base: string, count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i++) statuses.push((await create(base)).status);
  return statuses;
}

/** A fresh environment and a server with `settings`, for the tests of the enclosing describe. */
function useServer(setup: Setup, settings: Record<string, string>) {
  let environment: TestEnvironment | undefined;
  let server: RunningServer | undefined;
  beforeAll(async () => {
    environment = await createTestEnvironment(setup);
    server = await startTestServer(environment, settings);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });
  return { environment: () => environment!, server: () => server! };
}

describe.each(setups)('upload rate limit of 3 a minute (%s)', (setup) => {
  const running = useServer(setup, { RATE_LIMIT_UPLOADS: '3' });
  const db = (): Db => running.server().services.context.db;
  const url = () => running.server().url;
  // Every request comes from 127.0.0.1: each test starts with a full bucket.
  beforeEach(async () => {
    await db().deleteFrom('upload_rates').execute();
  });

  it('refuses the 4th creation within a minute with 429, Retry-After and Tus-Resumable', async () => {
    expect(await createMany(url(), 3)).toEqual([201, 201, 201]);
    const refused = await create(url());
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(refused.headers.get('tus-resumable')).toBe(V);
    expect(refused.headers.get('access-control-allow-origin')).toBe('*');
    expect(await refused.text()).toBe(`Too many uploads from this address; try again in ${retryAfter} s\n`);
  });

  it('still answers HEAD and PATCH of an existing upload once the limit is hit: resuming is never limited', async () => {
    const location = (await create(url())).headers.get('location')!;
    expect(await createMany(url(), 3)).toEqual([201, 201, 429]);

    const patch = await request(location, 'PATCH', { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' }, Buffer.from('abcd'));
    expect(patch.status).toBe(204);
    expect(patch.headers.get('upload-offset')).toBe('4');
    const head = await request(location, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe('4');
  });

  it('does not count a POST overridden to PATCH as a creation', async () => {
    const location = (await create(url())).headers.get('location')!;
    for (let offset = 0; offset < 4; offset++) {
      const patch = await request(location, 'POST', { 'X-HTTP-Method-Override': 'PATCH', 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset) }, Buffer.from('x'));
      expect(patch.status).toBe(204);
    }
    // One token went to the creation above, none to the four overridden PATCHes.
    expect(await createMany(url(), 3)).toEqual([201, 201, 429]);
  });

  it('lets one more creation through for each 20 s the bucket has refilled', async () => {
    expect(await createMany(url(), 4)).toEqual([201, 201, 201, 429]);
    // Time passes for the bucket instead of the test: its last refill moves 20 s back.
    await db().updateTable('upload_rates').set({ refilled_at: sql<Date>`refilled_at - interval '20 seconds'` }).execute();
    expect(await createMany(url(), 2)).toEqual([201, 429]);
  });

  it('lets creations through when the limit cannot be checked', async () => {
    await sql`alter table upload_rates rename to upload_rates_away`.execute(db());
    try {
      expect(await createMany(url(), 4)).toEqual([201, 201, 201, 201]);
    } finally {
      await sql`alter table upload_rates_away rename to upload_rates`.execute(db());
    }
  });

  it('forgets buckets unused for a minute, and keeps the others', async () => {
    await db()
      .insertInto('upload_rates')
      .values([
        { address: '192.0.2.1', tokens: 0, refilled_at: sql<Date>`now() - interval '61 seconds'`, allowed: false },
        { address: '192.0.2.2', tokens: 0, refilled_at: sql<Date>`now() - interval '30 seconds'`, allowed: false },
      ])
      .execute();
    expect(await pruneUploadRates(db())).toBe(1);
    const left = await db().selectFrom('upload_rates').select('address').execute();
    expect(left).toEqual([{ address: '192.0.2.2' }]);
  });
});

// Only the scale-out setup has two instances on one database.
describe('upload rate limit of 3 a minute, shared by two instances (scaleout)', () => {
  const running = useServer('scaleout', { RATE_LIMIT_UPLOADS: '3' });
  const url = () => running.server().url;
  beforeEach(async () => {
    await running.server().services.context.db.deleteFrom('upload_rates').execute();
  });

  /** Runs `test` with the URL of a second instance on the same database, closed afterwards. */
  async function withSecondInstance(test: (secondUrl: string) => Promise<void>) {
    const second = await startTestServer(running.environment(), { RATE_LIMIT_UPLOADS: '3', RUN_JOBS: 'false' });
    try {
      await test(second.url);
    } finally {
      await second.close();
    }
  }

  it('is shared by two instances on the same database', () =>
    withSecondInstance(async (secondUrl) => {
      expect(await createMany(url(), 2)).toEqual([201, 201]);
      expect(await createMany(secondUrl, 1)).toEqual([201]);
      expect((await create(secondUrl)).status).toBe(429);
      expect((await create(url())).status).toBe(429);
    }));

  it('counts concurrent creations on two instances exactly', () =>
    withSecondInstance(async (secondUrl) => {
      const statuses = await Promise.all([url(), secondUrl, url(), secondUrl, url(), secondUrl].map((base) => create(base).then((r) => r.status)));
      expect(statuses.sort()).toEqual([201, 201, 201, 429, 429, 429]);
    }));
});

describe.each(setups)('no upload rate limit (%s)', (setup) => {
  const running = useServer(setup, { RATE_LIMIT_UPLOADS: '0' });

  it('lets 10 creations in a row through', async () => {
    expect(await createMany(running.server().url, 10)).toEqual(Array(10).fill(201));
  });
});
