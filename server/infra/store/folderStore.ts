import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { FileStore } from '@tus/file-store';
import { ERRORS } from '@tus/utils';

/** Bytes per file write; two such buffers per PATCH, one filling while the other is written. */
const WRITE_SIZE = 1024 * 1024;

/**
 * FileStore whose PATCH bodies reach the file in large writes. FileStore pipes the socket's
 * chunks into a WriteStream: one thread-pool round trip per chunk, and each chunk kept alive
 * until written, long enough with a small young generation (npm start's flags) to be promoted
 * and freed only by full GCs. Here chunks are copied into two reused buffers and die young.
 */
export class FolderStore extends FileStore {
  override async write(readable: Readable, id: string, offset: number): Promise<number> {
    // @tus/server found the upload with getUpload(id) (FileStore's checked path) before writing.
    const file = await fs.open(path.join(this.directory, id), 'r+');
    let position = offset;
    let filling = Buffer.allocUnsafeSlow(WRITE_SIZE);
    let spare = Buffer.allocUnsafeSlow(WRITE_SIZE);
    let filled = 0;
    let writing: Promise<void> = Promise.resolve();
    // Writes what was filled while the next buffer fills; one write in flight at a time.
    const flush = async () => {
      await writing;
      const full = filling.subarray(0, filled);
      const at = position;
      position += filled;
      writing = writeAll(file, full, at);
      // Awaited at the next flush; until then its failure must not count as unhandled.
      writing.catch(() => undefined);
      [filling, spare] = [spare, filling];
      filled = 0;
    };
    try {
      try {
        for await (const chunk of readable as AsyncIterable<Buffer>) {
          for (let taken = 0; taken < chunk.length; ) {
            const n = chunk.copy(filling, filled, taken);
            filled += n;
            taken += n;
            if (filled === filling.length) await flush();
          }
        }
      } finally {
        // What arrived before an error or an abort is kept: the client resumes after it.
        await flush();
        await writing;
      }
    } catch {
      throw ERRORS.FILE_WRITE_ERROR;
    } finally {
      await file.close();
    }
    return position;
  }
}

async function writeAll(file: fs.FileHandle, bytes: Buffer, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) done += (await file.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
}
