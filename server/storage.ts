import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DeleteObjectsCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { FileStore } from '@tus/file-store';
import { S3Store } from '@tus/s3-store';
import type { DataStore } from '@tus/utils';
import type { Config, S3Config } from './config.ts';

/** Where stored bytes can be read from when a client asks for them. */
export type Located =
  | { kind: 'file'; path: string; size: number }
  | { kind: 'redirect'; url: string };

/**
 * The store behind the tus endpoint plus what the rest of the server needs from it. Keys are
 * always derived from the server-made upload id: `<id>` for the original, `outputs/<id>/<name>`.
 */
export interface Storage {
  readonly kind: 'folder' | 's3';
  readonly describe: string;
  readonly datastore: DataStore;
  /** The stored bytes of an upload, as a stream (one read, no buffering). */
  readOriginal(id: string): Promise<Readable>;
  /** Whether the store still holds an upload's whole original (false once it was removed). */
  hasOriginal(id: string): Promise<boolean>;
  /** Up to `length` first bytes an unfinished upload has stored so far (`length` under a part size). */
  readHead(id: string, length: number): Promise<Buffer>;
  /**
   * A local file holding the original, for tools that need a seekable file: the folder store's
   * own file (read in place, never written), or a copy streamed into `workDir`.
   */
  originalFile(id: string, workDir: string, signal: AbortSignal): Promise<string>;
  /** Removes an upload's bytes, unfinished parts, tus info and outputs; missing pieces are fine. */
  removeUpload(id: string): Promise<void>;
  /**
   * Removes unfinished uploads past their expiry that the store still holds, including those
   * no record points to (the process died before recording them); returns how many.
   */
  sweepExpired(): Promise<number>;
  /**
   * Stores a finished output file under `key`, replacing any earlier one (jobs may run twice).
   * The file is taken over: it may be moved rather than copied.
   */
  storeOutput(key: string, file: string, contentType: string): Promise<void>;
  locate(key: string, download: Download): Promise<Located>;
  ping(): Promise<void>;
}

/** How a download is presented: an S3 redirect can set only these two response headers. */
export interface Download {
  filename: string;
  contentType: string;
  disposition: 'attachment' | 'inline';
}

export function outputKey(uploadId: string, name: string): string {
  return `outputs/${uploadId}/${name}`;
}

export function createStorage(config: Config): Storage {
  return config.s3 ? new S3Storage(config.s3, config.uploadExpiresAfterMs) : new FolderStorage(config.dataDir, config.uploadExpiresAfterMs);
}

class FolderStorage implements Storage {
  readonly kind = 'folder';
  readonly describe: string;
  readonly datastore: FileStore;
  private readonly uploadsDir: string;

  constructor(private readonly dataDir: string, expiresAfterMs: number) {
    this.uploadsDir = path.join(dataDir, 'uploads');
    this.datastore = new FileStore({ directory: this.uploadsDir, expirationPeriodInMilliseconds: expiresAfterMs });
    this.describe = `folder ${dataDir}`;
  }

  private pathOf(key: string): string {
    return key.startsWith('outputs/') ? path.join(this.dataDir, key) : path.join(this.uploadsDir, key);
  }

  async readOriginal(id: string): Promise<Readable> {
    const file = this.pathOf(id);
    await fs.access(file);
    return createReadStream(file, { highWaterMark: 256 * 1024 });
  }

  hasOriginal(id: string): Promise<boolean> {
    return fs.access(this.pathOf(id)).then(
      () => true,
      () => false,
    );
  }

  async readHead(id: string, length: number): Promise<Buffer> {
    const file = await fs.open(this.pathOf(id));
    try {
      const { buffer, bytesRead } = await file.read(Buffer.alloc(length), 0, length, 0);
      return buffer.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  }

  async originalFile(id: string): Promise<string> {
    const file = this.pathOf(id);
    await fs.access(file);
    return file;
  }

  async removeUpload(id: string): Promise<void> {
    await Promise.all([
      fs.rm(this.pathOf(id), { force: true }),
      fs.rm(`${this.pathOf(id)}.json`, { force: true }),
      fs.rm(this.pathOf(outputKey(id, '')), { recursive: true, force: true }),
    ]);
  }

  /**
   * FileStore.deleteExpired() is not used: it tells finished uploads from unfinished ones by the
   * offset saved at creation (always 0), so it would delete finished originals once they expire.
   * getUpload() measures the file itself.
   */
  async sweepExpired(): Promise<number> {
    const expiresAfterMs = this.datastore.getExpiration();
    const ids = (await this.datastore.configstore.list?.()) ?? [];
    let removed = 0;
    for (const id of ids) {
      const upload = await this.datastore.getUpload(id).catch(() => undefined);
      if (!upload?.creation_date || upload.offset === upload.size) continue;
      if (Date.parse(upload.creation_date) + expiresAfterMs > Date.now()) continue;
      await this.removeUpload(id);
      removed++;
    }
    return removed;
  }

  async storeOutput(key: string, file: string): Promise<void> {
    const target = this.pathOf(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    // A rename is atomic: a reader never sees half an output, and a retry simply replaces it.
    // Across file systems (a temp dir on another volume) copy beside the target first.
    try {
      await fs.rename(file, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      const partial = `${target}.${process.pid}.partial`;
      await fs.copyFile(file, partial);
      await fs.rename(partial, target);
    }
  }

  async locate(key: string): Promise<Located> {
    const file = this.pathOf(key);
    const { size } = await fs.stat(file);
    return { kind: 'file', path: file, size };
  }

  async ping(): Promise<void> {
    await fs.mkdir(this.uploadsDir, { recursive: true });
    await fs.access(this.uploadsDir, fs.constants.W_OK);
  }
}

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

class S3Storage implements Storage {
  readonly kind = 's3';
  readonly describe: string;
  readonly datastore: S3Store;
  private readonly client: S3Client;
  /**
   * Signs download links for S3_PUBLIC_ENDPOINT when set: the host is part of the signature, so
   * a link made for the inside address cannot just have its host replaced. Signing sends nothing.
   */
  private readonly presignClient: S3Client;

  constructor(private readonly s3: S3Config, expiresAfterMs: number) {
    const clientConfig = s3ClientConfig(s3);
    this.client = new S3Client(clientConfig);
    this.presignClient = s3.publicEndpoint ? new S3Client({ ...clientConfig, endpoint: s3.publicEndpoint }) : this.client;
    this.datastore = new S3Store({
      partSize: s3.partSize,
      expirationPeriodInMilliseconds: expiresAfterMs,
      s3ClientConfig: { ...clientConfig, bucket: s3.bucket },
    });
    this.describe = `s3 ${s3.endpoint ?? 'aws'}/${s3.bucket}`;
  }

  async readOriginal(id: string): Promise<Readable> {
    const { Body } = await this.client.send(new GetObjectCommand({ Bucket: this.s3.bucket, Key: id }));
    if (!Body) throw new Error(`s3 object ${id} has no body`);
    return Body as Readable;
  }

  /** The object exists only once the multipart upload was completed: parts alone are not an original. */
  async hasOriginal(id: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.s3.bucket, Key: id }));
      return true;
    } catch (error) {
      if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
      throw error;
    }
  }

  /** Until a whole part (5 MiB at least) has arrived, @tus/s3-store keeps the bytes in `<id>.part`. */
  async readHead(id: string, length: number): Promise<Buffer> {
    const command = new GetObjectCommand({ Bucket: this.s3.bucket, Key: `${id}.part`, Range: `bytes=0-${length - 1}` });
    const { Body } = await this.client.send(command);
    if (!Body) throw new Error(`s3 object ${id}.part has no body`);
    return Buffer.from(await Body.transformToByteArray());
  }

  async originalFile(id: string, workDir: string, signal: AbortSignal): Promise<string> {
    const file = path.join(workDir, 'original');
    await pipeline(await this.readOriginal(id), createWriteStream(file), { signal });
    return file;
  }

  async removeUpload(id: string): Promise<void> {
    // remove() aborts the multipart upload and deletes <id> and <id>.info, but not <id>.part.
    await this.datastore.remove(id).catch(() => undefined);
    const listed = await this.client.send(new ListObjectsV2Command({ Bucket: this.s3.bucket, Prefix: outputKey(id, '') }));
    const outputs = (listed.Contents ?? []).map((o) => ({ Key: o.Key }));
    await this.client.send(
      new DeleteObjectsCommand({
        Bucket: this.s3.bucket,
        Delete: { Objects: [{ Key: id }, { Key: `${id}.info` }, { Key: `${id}.part` }, ...outputs], Quiet: true },
      }),
    );
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

  async ping(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.s3.bucket }));
  }
}

/** `attachment` with an ASCII fallback and the UTF-8 name (RFC 6266 / 5987). */
export function contentDisposition(filename: string, kind: 'attachment' | 'inline' = 'attachment'): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}
