import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortMultipartUploadCommand, DeleteObjectsCommand, GetObjectCommand, HeadBucketCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3Config } from '../settings/config.ts';
import type { Logger } from '../settings/log.ts';
import type { StoreRequestOf } from './storeRequest.ts';
import { concatenateObjects } from './s3Concatenation.ts';
import { S3DirectUploads } from './s3DirectUploads.ts';
import { S3UploadStore } from './s3UploadStore.ts';
import { markStoreFailures, markStreamFailures } from './storeUnavailable.ts';
import { contentDisposition, outputKey, postLandingKey, type Concatenated, type Download, type Located, type StoredPart, type Storage } from './storage.ts';

/** The client settings both our S3 client and @tus/s3-store's must share. */
export function s3ClientConfig(s3: S3Config): S3ClientConfig {
  return {
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: s3.forcePathStyle,
    credentials: s3.accessKeyId && s3.secretAccessKey ? { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } : undefined,
    requestChecksumCalculation: s3.checksums,
    responseChecksumValidation: s3.checksums,
  };
}

/** The SDK's own notes, at debug level: it logs every command at info, and warns on its console by default. */
function sdkLogger(log: Logger): NonNullable<S3ClientConfig['logger']> {
  const note = (message: unknown) => log.debug({ sdk: message }, 'S3 client note');
  return { trace: () => {}, debug: () => {}, info: () => {}, warn: note, error: note };
}

/** The bucket store (S3_BUCKET); `createStorage` imports this module only then. */
export class S3Storage implements Storage {
  readonly kind = 's3';
  readonly describe: string;
  readonly datastore: S3UploadStore;
  readonly direct: S3DirectUploads;
  private readonly client: S3Client;
  /**
   * Signs download links and direct uploads for S3_PUBLIC_ENDPOINT when set: the host is part of
   * the signature, so a link made for the inside address cannot just have its host replaced.
   * Signing sends nothing.
   */
  private readonly presignClient: S3Client;

  private readonly s3: S3Config;
  constructor(s3: S3Config, expiresAfterMs: number, log: Logger, requestOf: StoreRequestOf) {
    this.s3 = s3;
    const clientConfig = s3ClientConfig(s3);
    this.client = new S3Client(clientConfig);
    markStoreFailures(this.client);
    this.presignClient = new S3Client({ ...clientConfig, endpoint: s3.publicEndpoint ?? s3.endpoint, requestChecksumCalculation: 'WHEN_REQUIRED' });
    this.direct = new S3DirectUploads(this.client, this.presignClient, s3.bucket);
    this.datastore = new S3UploadStore({
      partSize: s3.partSize,
      expirationPeriodInMilliseconds: expiresAfterMs,
      // Tags let a bucket lifecycle rule expire unfinished uploads; the cleanup job does that here,
      // and a tagged store rewrites every finished upload's info object once more.
      useTags: false,
      streamIdleMs: s3.streamIdleMs,
      streamBufferBytes: s3.streamBufferBytes,
      requestOf,
      // The SDK tells its console when a streamed part fails; the store already recovers or reports that part.
      s3ClientConfig: { ...clientConfig, bucket: s3.bucket, logger: sdkLogger(log.child({ part: 's3' })) },
    });
    this.describe = `s3 ${s3.endpoint ?? 'aws'}/${s3.bucket}`;
  }

  async readOriginal(id: string): Promise<Readable> {
    const { Body } = await this.client.send(new GetObjectCommand({ Bucket: this.s3.bucket, Key: id }));
    if (!Body) throw new Error(`s3 object ${id} has no body`);
    return markStreamFailures(Body as Readable);
  }

  /** The object exists only once the multipart upload was completed: parts alone are not an original. */
  async hasOriginal(id: string): Promise<boolean> {
    return (await this.direct.objectSize(id)) !== undefined;
  }

  /** Until a whole part (5 MiB at least) has arrived, @tus/s3-store keeps the bytes in `<id>.part`. */
  async readHead(id: string, length: number): Promise<Buffer> {
    const command = new GetObjectCommand({ Bucket: this.s3.bucket, Key: `${id}.part`, Range: `bytes=0-${length - 1}` });
    const { Body } = await this.client.send(command);
    if (!Body) throw new Error(`s3 object ${id}.part has no body`);
    return Buffer.from(await Body.transformToByteArray());
  }

  /** A finished upload is the completed object `<id>`. */
  async readOriginalHead(id: string, length: number): Promise<Buffer> {
    const { Body } = await this.client.send(new GetObjectCommand({ Bucket: this.s3.bucket, Key: id, Range: `bytes=0-${length - 1}` }));
    if (!Body) throw new Error(`s3 object ${id} has no body`);
    return Buffer.from(await Body.transformToByteArray());
  }

  /** Server-side: UploadPartCopy from the partial objects (s3Concatenation.ts). */
  concatenate(target: string, parts: StoredPart[]): Promise<Concatenated> {
    return concatenateObjects(this.client, this.s3.bucket, target, parts.map((part) => ({ key: part.id, size: part.size })));
  }

  async originalFile(id: string, workDir: string, signal: AbortSignal): Promise<string> {
    const file = path.join(workDir, 'original');
    await pipeline(await this.readOriginal(id), createWriteStream(file), { signal });
    return file;
  }

  async removeUpload(id: string): Promise<void> {
    // remove() aborts the multipart upload and deletes <id> and <id>.info, but not <id>.part.
    await this.datastore.remove(id).catch(() => undefined);
    // A direct upload's multipart upload has no .info to find it by: S3 lists it under its key.
    await this.abortMultipartUploads(id);
    await this.deleteObjects([id, `${id}.info`, `${id}.part`, postLandingKey(id), ...(await this.outputKeys(id))]);
  }

  private async abortMultipartUploads(key: string): Promise<void> {
    const listed = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.s3.bucket, Prefix: key }));
    for (const upload of listed.Uploads ?? []) {
      if (upload.Key === key) await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.s3.bucket, Key: key, UploadId: upload.UploadId }));
    }
  }

  async removeOutputs(id: string): Promise<void> {
    await this.deleteObjects(await this.outputKeys(id));
  }

  /** Every key under the upload's outputs: an HLS ladder of a long video holds more than one page of them. */
  private async outputKeys(id: string): Promise<string[]> {
    const keys: string[] = [];
    let ContinuationToken: string | undefined;
    do {
      const listed = await this.client.send(new ListObjectsV2Command({ Bucket: this.s3.bucket, Prefix: outputKey(id, ''), ContinuationToken }));
      keys.push(...(listed.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : [])));
      ContinuationToken = listed.IsTruncated ? listed.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return keys;
  }

  private async deleteObjects(keys: string[]): Promise<void> {
    // S3 takes at most 1000 keys per request.
    for (let at = 0; at < keys.length; at += 1000) {
      const Objects = keys.slice(at, at + 1000).map((Key) => ({ Key }));
      await this.client.send(new DeleteObjectsCommand({ Bucket: this.s3.bucket, Delete: { Objects, Quiet: true } }));
    }
  }

  /** Lists open multipart uploads: finished objects are never among them. */
  sweepExpired(): Promise<number> {
    return this.datastore.deleteExpired();
  }

  async storeOutput(key: string, file: string, contentType: string): Promise<void> {
    const { size } = await fs.stat(file);
    await this.client.send(
      new PutObjectCommand({ Bucket: this.s3.bucket, Key: key, Body: createReadStream(file), ContentLength: size, ContentType: contentType }),
    );
  }

  async locate(key: string, download: Download): Promise<Located> {
    const command = new GetObjectCommand({
      Bucket: this.s3.bucket,
      Key: key,
      ResponseContentType: download.contentType,
      ResponseContentDisposition: contentDisposition(download.filename, download.disposition),
    });
    return { kind: 'redirect', url: await getSignedUrl(this.presignClient, command, { expiresIn: this.s3.presignExpiresSeconds }) };
  }

  async readOutput(key: string): Promise<Buffer> {
    const { Body } = await this.client.send(new GetObjectCommand({ Bucket: this.s3.bucket, Key: key }));
    return Buffer.from(await Body!.transformToByteArray());
  }

  async ping(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.s3.bucket }));
  }
}
