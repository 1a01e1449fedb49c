import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');

/**
 * The layers, from the bottom up, each a folder (docs/architecture.md). A file may
 * import its own layer's files and those of lower ranks, never a higher rank or another layer of
 * its own rank. processors/ are the bottom: they import nothing of the repo. The longest
 * matching prefix names a file's layer, so a new file is placed by where it lives.
 */
const layers = [
  { name: 'processors', rank: 0, prefix: 'processors/' },
  { name: 'settings and logs', rank: 1, prefix: 'server/infra/settings/' },
  // The pool, and the connections kept open outside it that the database and the locks both use.
  { name: 'postgres connections', rank: 2, prefix: 'server/infra/pg/' },
  // This machine's processes: which still run, and the temp files each one leaves.
  { name: 'processes', rank: 2, prefix: 'server/infra/processes/' },
  { name: 'database', rank: 3, prefix: 'server/infra/db/' },
  { name: 'migrations', rank: 3, prefix: 'migrations/' },
  { name: 'store', rank: 3, prefix: 'server/infra/store/' },
  { name: 'locks', rank: 3, prefix: 'server/infra/locks/' },
  { name: 'upload domain', rank: 4, prefix: 'hooks/' },
  { name: 'jobs', rank: 5, prefix: 'server/jobs/' },
  { name: 'auth', rank: 6, prefix: 'server/auth/' },
  { name: 'http', rank: 7, prefix: 'server/http/' },
  { name: 'tus edge', rank: 8, prefix: 'server/tus/' },
  { name: 'entry points', rank: 9, prefix: 'server/main/' },
];

type Layer = (typeof layers)[number];

function layerOf(file: string): Layer | undefined {
  return layers.filter((layer) => file.startsWith(layer.prefix)).sort((a, b) => b.prefix.length - a.prefix.length)[0];
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
    // The database and migrations are one layer in two folders (the database module runs the migrations).
    const sameLayer = a === b || [a.name, b.name].every((n) => n === 'database' || n === 'migrations');
    const allowed = sameLayer || (a.name !== 'processors' && b.rank < a.rank);
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

/** Every cycle among the edges, each once, as a path from its smallest file back to it. */
function cycles(all: Edge[]): string[] {
  const next = new Map<string, string[]>();
  for (const { from, to } of all) next.set(from, [...(next.get(from) ?? []), to]);
  const found = new Set<string>();
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const to of next.get(file) ?? []) {
      if (state.get(to) === 'open') {
        const loop = stack.slice(stack.indexOf(to));
        const first = loop.indexOf([...loop].sort()[0]!);
        const turned = [...loop.slice(first), ...loop.slice(0, first)];
        found.add([...turned, turned[0]].join(' -> '));
      } else if (!state.has(to)) visit(to);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of [...next.keys()].sort()) if (!state.has(file)) visit(file);
  return [...found].sort();
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

  it('has no import cycle (type-only imports included)', () => {
    expect(cycles(edges)).toEqual([]);
  });

  it('catches a cycle', () => {
    const cycle = [
      { from: 'hooks/a.ts', to: 'hooks/b.ts' },
      { from: 'hooks/b.ts', to: 'hooks/c.ts' },
      { from: 'hooks/c.ts', to: 'hooks/a.ts' },
    ];
    expect(cycles(cycle)).toEqual(['hooks/a.ts -> hooks/b.ts -> hooks/c.ts -> hooks/a.ts']);
    expect(cycles(cycle.slice(0, 2))).toEqual([]);
  });

  it('keeps the upload domain free of HTTP and of the tus engine: no Koa, no @tus/* in hooks/', () => {
    const packages = (file: string) =>
      ts.preProcessFile(fs.readFileSync(path.join(root, file), 'utf8'), true, true).importedFiles.map(({ fileName }) => fileName).filter((name) => !name.startsWith('.'));
    const found = scanned.filter((file) => file.startsWith('hooks/')).flatMap((file) => packages(file).filter((name) => /^(koa|@koa\/|@tus\/)/.test(name)).map((name) => `${file} imports ${name}`));
    expect(found).toEqual([]);
  });

  it('leaves upload states one writer: only the lifecycle imports the statements that change them', () => {
    const writers = edges.filter(({ to }) => to === 'server/infra/db/uploadStates.ts').map(({ from }) => from);
    expect(writers).toEqual(['hooks/uploadLifecycle.ts']);
    // Nothing else inserts uploads (a row has a status) or sets their status.
    const statusWrites = scanned.filter((file) => {
      const source = fs.readFileSync(path.join(root, file), 'utf8');
      const writes = /insertInto\('uploads'\)|insert into uploads|updateTable\('uploads'\)\s*\.set\(\{[^}]*\bstatus\b|update uploads\s+set[^;`]*\bstatus\s*=/;
      return file !== 'server/infra/db/uploadStates.ts' && writes.test(source);
    });
    expect(statusWrites).toEqual([]);
  });

  it('catches an import against the direction', () => {
    expect(breaches([{ from: 'hooks/uploadCreate.ts', to: 'server/jobs/jobRunner.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/infra/db/records.ts', to: 'hooks/typePolicy.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'processors/clamd.ts', to: 'server/infra/settings/config.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/infra/store/storage.ts', to: 'server/infra/db/records.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/infra/pg/dedicatedConnection.ts', to: 'server/infra/db/database.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/infra/locks/postgresLocker.ts', to: 'server/infra/pg/dedicatedConnection.ts' }])).toEqual([]);
    expect(breaches([{ from: 'server/jobs/cleanup.ts', to: 'server/http/routes/uploads.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/http/app.ts', to: 'server/tus/tusServer.ts' }])).toHaveLength(1);
    // A new file is placed by its folder: a new S3 helper is in the store layer, not HTTP.
    expect(breaches([{ from: 'server/infra/store/s3Presign.ts', to: 'server/http/app.ts' }])).toHaveLength(1);
    expect(breaches([{ from: 'server/http/routes/uploads.ts', to: 'hooks/uploadLifecycle.ts' }])).toEqual([]);
  });

  it('reads type-only, re-exported and dynamic imports too', () => {
    const source = `import type { A } from './a.ts';\nexport { B } from '../b.ts';\nconst c = await import('./c.ts');\ntype D = import('./d.ts').D;`;
    const found = ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName);
    expect(found).toEqual(expect.arrayContaining(['./a.ts', '../b.ts', './c.ts', './d.ts']));
  });
});
