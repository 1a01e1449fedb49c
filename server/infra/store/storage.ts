import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileStore } from '@tus/file-store';
import type { DataStore } from '@tus/utils';
import type { Config } from '../settings/config.ts';
import type { Logger } from '../settings/log.ts';

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
  /** Up to `length` first bytes of a finished upload (a partial one taken into a final). */
  readOriginalHead(id: string, length: number): Promise<Buffer>;
  /**
   * Fills `target`, an upload just created empty with the parts' summed length, with the parts'
   * bytes in order (tus concatenation). The store then reports `target` complete.
   */
  concatenate(target: string, parts: StoredPart[]): Promise<Concatenated>;
  /**
   * A local file holding the original, for tools that need a seekable file: the folder store's
   * own file (read in place, never written), or a copy streamed into `workDir`.
   */
  originalFile(id: string, workDir: string, signal: AbortSignal): Promise<string>;
  /** Removes an upload's bytes, unfinished parts, tus info and outputs; missing pieces are fine. */
  removeUpload(id: string): Promise<void>;
  /** Removes an upload's outputs only (a job whose upload moved on while it made them); missing ones are fine. */
  removeOutputs(id: string): Promise<void>;
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

/** A finished upload of known size that a concatenation reads. */
export interface StoredPart {
  id: string;
  size: number;
}

/** Where a concatenation's bytes went: copied inside the store, or read and written by this process. */
export interface Concatenated {
  copiedInStore: number;
  passedThrough: number;
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

/** The folder store, or S3's (its SDK is loaded only then: ~10 MB a folder-store server never needs). */
export async function createStorage(config: Config, log: Logger): Promise<Storage> {
  if (!config.s3) return new FolderStorage(config.dataDir, config.uploadExpiresAfterMs);
  const { S3Storage } = await import('./s3Storage.ts');
  return new S3Storage(config.s3, config.uploadExpiresAfterMs, log);
}

class FolderStorage implements Storage {
  readonly kind = 'folder';
  readonly describe: string;
  readonly datastore: FileStore;
  private readonly uploadsDir: string;

  private readonly dataDir: string;
  constructor(dataDir: string, expiresAfterMs: number) {
    this.dataDir = dataDir;
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

  readOriginalHead(id: string, length: number): Promise<Buffer> {
    return this.readHead(id, length);
  }

  /** A streamed append, part after part: a local folder has no copy inside the store. */
  async concatenate(target: string, parts: StoredPart[]): Promise<Concatenated> {
    for (const part of parts) {
      await pipeline(createReadStream(this.pathOf(part.id), { highWaterMark: 256 * 1024 }), createWriteStream(this.pathOf(target), { flags: 'a' }));
    }
    return { copiedInStore: 0, passedThrough: parts.reduce((sum, part) => sum + part.size, 0) };
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
      this.removeOutputs(id),
    ]);
  }

  async removeOutputs(id: string): Promise<void> {
    await fs.rm(this.pathOf(outputKey(id, '')), { recursive: true, force: true });
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

/** `attachment` with an ASCII fallback and the UTF-8 name (RFC 6266 / 5987). */
export function contentDisposition(filename: string, kind: 'attachment' | 'inline' = 'attachment'): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}
