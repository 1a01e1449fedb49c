import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');

/**
 * The layers of DESIGN.md, by path, from the bottom up. A file may import its own layer's files
 * and those of lower ranks, never a higher rank or another layer of its own rank. The database
 * module and the store live under server/ but sit below the upload domain; settings and logs are
 * the leaf every layer may read (config.ts only turns the environment into values; log.ts makes a
 * pino logger). processors/ are the bottom: they import nothing of the repo.
 */
const layers = [
  { name: 'processors', rank: 0, owns: (file: string) => file.startsWith('processors/') },
  { name: 'settings and logs', rank: 1, owns: (file: string) => file === 'server/config.ts' || file === 'server/log.ts' },
  { name: 'database', rank: 2, owns: (file: string) => file.startsWith('server/db/') || file.startsWith('migrations/') },
  { name: 'store', rank: 2, owns: (file: string) => ['server/storage.ts', 'server/s3Storage.ts', 'server/s3Concatenation.ts', 'server/s3UploadStore.ts', 'server/storeRequest.ts'].includes(file) },
  { name: 'upload domain', rank: 3, owns: (file: string) => file.startsWith('hooks/') },
  { name: 'jobs', rank: 4, owns: (file: string) => file.startsWith('server/jobs/') },
  { name: 'entry points and HTTP', rank: 5, owns: (file: string) => file.startsWith('server/') },
];

type Layer = (typeof layers)[number];

function layerOf(file: string): Layer | undefined {
  return layers.find((layer) => layer.owns(file));
}

interface Edge {
  from: string;
  to: string;
}

/** The imports that break the direction, each with the layers it joins. */
function breaches(edges: Edge[]): string[] {
  return edges.flatMap(({ from, to }) => {
    const a = layerOf(from)!;
    const b = layerOf(to);
    if (!b) return [`${from} imports ${to}, which is in no layer`];
    const allowed = a === b || (a.name !== 'processors' && b.rank < a.rank);
    return allowed ? [] : [`${from} (${a.name}) imports ${to} (${b.name})`];
  });
}

function tsFilesUnder(dir: string): string[] {
  return fs
    .readdirSync(path.join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .map((name) => path.posix.join(dir, name.split(path.sep).join('/')));
}

/** Every import of the repo's own files in `file`: static, `import type`, `export … from` and literal `import()`. */
function importsOf(file: string): Edge[] {
  const { importedFiles } = ts.preProcessFile(fs.readFileSync(path.join(root, file), 'utf8'), true, true);
  return importedFiles
    .filter(({ fileName }) => fileName.startsWith('.'))
    .map(({ fileName }) => ({ from: file, to: path.posix.normalize(path.posix.join(path.posix.dirname(file), fileName)) }));
}

const scanned = ['server', 'hooks', 'processors', 'migrations'].flatMap(tsFilesUnder);
const edges = scanned.flatMap(importsOf);

describe('one-way layers', () => {
  it('finds the files and their imports', () => {
    expect(scanned).toContain('hooks/uploadLifecycle.ts');
    expect(scanned).toContain('server/jobs/jobRunner.ts');
    expect(edges.length).toBeGreaterThan(100);
    // A specifier that names no file would be judged by its path alone.
    expect(edges.filter(({ to }) => !fs.existsSync(path.join(root, to))).map(({ from, to }) => `${from} -> ${to}`)).toEqual([]);
  });

  it('puts every file in a layer', () => {
    expect(scanned.filter((file) => !layerOf(file))).toEqual([]);
  });

  it('has no import against the direction', () => {
    expect(breaches(edges)).toEqual([]);
  });

  it('leaves upload states one writer: only the lifecycle imports the statements that change them', () => {
    const writers = edges.filter(({ to }) => to === 'server/db/uploadStates.ts').map(({ from }) => from);
    expect(writers).toEqual(['hooks/uploadLifecycle.ts']);
    // Nothing else inserts uploads (a row has a status) or sets their status.
    const statusWrites = scanned.filter((file) => {
      const source = fs.readFileSync(path.join(root, file), 'utf8');
      const writes = /insertInto\('uploads'\)|insert into uploads|updateTable\('uploads'\)\s*\.set\(\{[^}]*\bstatus\b|update uploads\s+set[^;`]*\bstatus\s*=/;
      return file !== 'server/db/uploadStates.ts' && writes.test(source);
    });
    expect(statusWrites).toEqual([]);
  });

  it('catches an import against the direction', () => {
    expect(breaches([{ from: 'hooks/uploadCreate.ts', to: 'server/jobs/jobRunner.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/db/records.ts', to: 'hooks/typePolicy.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'processors/clamd.ts', to: 'server/config.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/storage.ts', to: 'server/db/records.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/jobs/cleanup.ts', to: 'server/routes/uploads.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/routes/uploads.ts', to: 'hooks/uploadLifecycle.ts' }])).toEqual([]);
  });

  it('reads type-only, re-exported and dynamic imports too', () => {
    const source = `import type { A } from './a.ts';\nexport { B } from '../b.ts';\nconst c = await import('./c.ts');\ntype D = import('./d.ts').D;`;
    const found = ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName);
    expect(found).toEqual(expect.arrayContaining(['./a.ts', '../b.ts', './c.ts', './d.ts']));
  });
});
