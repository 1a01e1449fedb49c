// `npm run bench:outage`: the outage drills at full length (not part of the test run). Uploads with
// tus-js-client (retry delays adding up to 59 s) while the object store (a proxy between the
// server and radosgw refusing and cutting every connection) and then Postgres (a private server of
// the bench's own, stopped and started) are away for BENCH_OUTAGE. An outage longer than the
// clients' retries ends in errors their users retry (up to 5 times each): those retries resume the
// upload's URL. Prints, per outage, the creations per file and what was left behind: records not
// `ready`, open multipart uploads, uploads still counted in flight.
//
// Settings (environment):
//   BENCH_OUTAGE=120     seconds each dependency is away
//   BENCH_FILES=20       uploads at once (6 MiB each)
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import pg from 'pg';
import { testS3, testS3Client } from '../services/env.ts';
import { drillFigures, runOutageDrill, type OutageDrillResult } from '../support/outageDrill.ts';
import { startOutageProxy } from '../support/outageProxy.ts';
import { killAll, startServerProcess } from '../support/processes.ts';
import { serviceScript } from '../support/serviceScripts.ts';
import { createTestEnvironment } from '../support/testServer.ts';
import { uploadIdOf, waitUntilSettled } from '../support/uploads.ts';
import { MiB, positiveInt } from './common.ts';

const outageMs = positiveInt('BENCH_OUTAGE', 120) * 1000;
const files = positiveInt('BENCH_FILES', 20);
const drillShape = { files, fileSize: 6 * MiB, chunkSize: MiB / 2, pauseMs: 300, outageMs, userRetries: 5 };
/** The private Postgres keeps its data between runs: this run's files are told apart by name. */
const run = Date.now().toString(36);

interface Row {
  outage: string;
  drill: OutageDrillResult;
  notReady: { status: string; n: number }[];
  inFlight: number;
  openMultipart: number | undefined;
}

/** Every file ready and whole; the records by status, and those still `uploading` (held in QUOTA_UPLOADS_IN_FLIGHT). */
async function leftBehind(baseUrl: string, databaseUrl: string, prefix: string, drill: OutageDrillResult) {
  await Promise.all(drill.urls.map((url) => waitUntilSettled(baseUrl, uploadIdOf(url), 300_000)));
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const { rows } = await db.query<{ status: string; n: number }>(`select status, count(*)::int as n from uploads where filename like $1 group by status`, [`${prefix}-%`]);
    return { notReady: rows.filter((r) => r.status !== 'ready'), inFlight: rows.find((r) => r.status === 'uploading')?.n ?? 0, ready: rows.find((r) => r.status === 'ready')?.n ?? 0 };
  } finally {
    await db.end();
  }
}

async function storeOutage(): Promise<Row> {
  const proxy = await startOutageProxy(testS3.endpoint);
  const environment = await createTestEnvironment('scaleout', { S3_ENDPOINT: proxy.url, SCAN: 'off', RATE_LIMIT_UPLOADS: '0' });
  const server = await startServerProcess(environment.env);
  const s3 = testS3Client();
  try {
    const drill = await runOutageDrill({ ...drillShape, baseUrl: server.url, prefix: `store-${run}`, takeAway: () => proxy.down(), bringBack: () => proxy.up() });
    const left = await leftBehind(server.url, environment.env.DATABASE_URL!, `store-${run}`, drill);
    if (left.ready !== files) throw new Error(`store outage: ${left.ready} of ${files} ready`);
    const { Uploads = [] } = await s3.send(new ListMultipartUploadsCommand({ Bucket: environment.env.S3_BUCKET }));
    return { outage: 'store', drill, ...left, openMultipart: Uploads.length };
  } finally {
    await server.kill('SIGTERM');
    s3.destroy();
    await proxy.close();
    await environment.destroy();
  }
}

async function databaseOutage(): Promise<Row> {
  const postgres = { env: { PG_INSTANCE: 'bench-outage-postgres', PG_PORT: '15492' }, url: 'postgres://postgres@127.0.0.1:15492/test' };
  const postgresScript = (command: string) => serviceScript('private-postgres', command, postgres.env);
  await postgresScript('start');
  const environment = await createTestEnvironment('embedded', { DATABASE_URL: postgres.url, SCAN: 'off', RATE_LIMIT_UPLOADS: '0', JOB_LEASE: '5s' });
  const server = await startServerProcess(environment.env);
  try {
    const drill = await runOutageDrill({
      ...drillShape,
      baseUrl: server.url,
      prefix: `database-${run}`,
      takeAway: () => postgresScript('stop'),
      bringBack: () => postgresScript('start'),
    });
    const left = await leftBehind(server.url, postgres.url, `database-${run}`, drill);
    if (left.ready !== files) throw new Error(`database outage: ${left.ready} of ${files} ready`);
    return { outage: 'Postgres', drill, ...left, openMultipart: undefined };
  } finally {
    await server.kill('SIGTERM');
    await environment.destroy();
    await postgresScript('stop');
  }
}

try {
  const rows: Row[] = [];
  for (const outage of [storeOutage, databaseOutage]) {
    const row = await outage();
    rows.push(row);
    console.log(JSON.stringify({ outage: row.outage, ...drillFigures(row.drill), notReady: row.notReady, inFlight: row.inFlight, openMultipart: row.openMultipart }));
  }
  console.log(`\n${files} uploads of 6 MiB (0.5 MiB chunks, retry delays adding up to 59 s, users retrying), each dependency away ${outageMs / 1000} s:\n`);
  console.log('| outage | creations per file (max) | uploads created | user retries | HEAD 423 answers | records not `ready` | still in flight | open multipart uploads |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const { outage, drill, notReady, inFlight, openMultipart } of rows) {
    const created = drill.creations.reduce((a, b) => a + b);
    console.log(
      `| ${outage} | ${Math.max(...drill.creations)} | ${created} for ${files} files | ${drill.userRetried} | ${drill.answers['HEAD 423'] ?? 0} | ${notReady.map((r) => `${r.n} ${r.status}`).join(', ') || 'none'} | ${inFlight} | ${openMultipart ?? 'n/a (folder store)'} |`,
    );
  }
} finally {
  await killAll();
}
