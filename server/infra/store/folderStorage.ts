import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileStore } from '@tus/file-store';
import { outputKey, type Concatenated, type Located, type Storage, type StoredPart } from './storage.ts';

/** The store in a local folder (no S3_BUCKET): `uploads/` for tus, `outputs/` beside it. */
export class FolderStorage implements Storage {
  readonly kind = 'folder';
  readonly describe: string;
  readonly datastore: FileStore;
  /** Only a bucket takes bytes straight from clients. */
  readonly direct = undefined;
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

  readOutput(key: string): Promise<Buffer> {
    return fs.readFile(this.pathOf(key));
  }

  async ping(): Promise<void> {
    await fs.mkdir(this.uploadsDir, { recursive: true });
    await fs.access(this.uploadsDir, fs.constants.W_OK);
  }
}
