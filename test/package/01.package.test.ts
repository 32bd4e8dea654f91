/**
 * The built package loads both ways, by its own name (package.json "exports"), with declarations.
 * Runs against dist/, which `npm test` builds first.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..', '..');
const API = ['open', 'FencedError', 'LeaseLostError', 'NotLeaseHolderError', 'CoordinatorUnavailableError',
  'AcquireTimeoutError', 'UnsafeStorageError', 'CommitOutcomeUnknownError'];

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
}

test("require('sqlite-ha') loads the CommonJS build with the documented exports", () => {
  const out = node(['-e', "const m = require('sqlite-ha'); console.log(JSON.stringify(Object.keys(m)))"]);
  expect(JSON.parse(out)).toEqual(expect.arrayContaining(API));
});

test("import('sqlite-ha') loads the ESM entry with the same exports", () => {
  const out = node(['--input-type=module', '-e',
    "import * as m from 'sqlite-ha'; import { open } from 'sqlite-ha'; console.log(JSON.stringify([typeof open, ...Object.keys(m)]))"]);
  const [openType, ...names] = JSON.parse(out);
  expect(openType).toBe('function');
  expect(names).toEqual(expect.arrayContaining(API));
});

test('type declarations ship next to the build', () => {
  const dts = fs.readFileSync(path.join(root, 'dist', 'index.d.ts'), 'utf8');
  for (const name of API) expect(dts).toContain(name);
  expect(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).types).toBe('dist/index.d.ts');
});

test('errors carry stable codes', () => {
  const out = node(['-e', `const m = require('sqlite-ha');
    console.log(JSON.stringify([new m.FencedError(1, 2).code, new m.LeaseLostError('x').code,
      new m.NotLeaseHolderError('x').code, new m.CoordinatorUnavailableError('x').code,
      new m.AcquireTimeoutError(1, null).code, new m.UnsafeStorageError('x').code,
      new m.CommitOutcomeUnknownError({}).code]))`]);
  expect(JSON.parse(out)).toEqual(['SQLITE_HA_FENCED', 'SQLITE_HA_LEASE_LOST', 'SQLITE_HA_NOT_LEASE_HOLDER',
    'SQLITE_HA_COORDINATOR_UNAVAILABLE', 'SQLITE_HA_ACQUIRE_TIMEOUT', 'SQLITE_HA_UNSAFE_STORAGE',
    'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN']);
});

/** The exports of dist/index.d.ts as the TypeScript compiler resolves them. */
let exportsCache: { name: string; doc: string; declarations: string[] }[] | null = null;
function declaredExports(): { name: string; doc: string; declarations: string[] }[] {
  return (exportsCache ??= readDeclaredExports());
}

function readDeclaredExports(): { name: string; doc: string; declarations: string[] }[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ts = require('typescript') as typeof import('typescript');
  const entry = path.join(root, 'dist', 'index.d.ts');
  const program = ts.createProgram([entry], { noEmit: true, skipLibCheck: true, types: [] });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
  return checker.getExportsOfModule(module).map((s) => {
    const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
    return {
      name: s.getName(),
      doc: ts.displayPartsToString(target.getDocumentationComment(checker)),
      declarations: (target.getDeclarations() ?? []).map((d) => d.getSourceFile().getFullText().slice(d.getFullStart(), d.getEnd())),
    };
  });
}

test('every public export has a doc comment in the shipped declarations', () => {
  const undocumented = declaredExports().filter((e) => e.doc.trim() === '').map((e) => e.name);
  expect(undocumented).toEqual([]);
});

test('the shipped declarations hide @internal members (stripInternal)', () => {
  const dts: string[] = [];
  const walk = (dir: string) => {
    for (const f of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, f.name);
      if (f.isDirectory()) walk(p);
      else if (f.name.endsWith('.d.ts')) dts.push(fs.readFileSync(p, 'utf8'));
    }
  };
  walk(path.join(root, 'dist'));
  expect(dts.filter((text) => text.includes('@internal'))).toEqual([]);
  const exported = new Map(declaredExports().map((e) => [e.name, e.declarations.join('\n')]));
  // LeaseStatus's bookkeeping and the constructors meant for open() / db.prepare() only.
  expect(exported.get('LeaseStatus')).not.toMatch(/\bcurrent\b|\blastHolder\b/);
  expect(exported.get('HADatabase')).not.toMatch(/constructor\(/);
  // The statement adapter's internals are not public API on the handle.
  expect(exported.get('HADatabase')).not.toMatch(/\b(runWrite|runRead|transactionControl|currentConnection|generation)\b/);
});

test("'sqlite-ha/kysely' loads both ways with declarations; the main entry exports serve without loading kysely", () => {
  const cjs = node(['-e', "const m = require('sqlite-ha/kysely'); console.log(JSON.stringify([typeof m.SqliteHaDialect, typeof m.SqliteHaDriver]))"]);
  expect(JSON.parse(cjs)).toEqual(['function', 'function']);
  const esm = node(['--input-type=module', '-e', "import { SqliteHaDialect } from 'sqlite-ha/kysely'; console.log(typeof SqliteHaDialect)"]);
  expect(esm.trim()).toBe('function');
  expect(fs.readFileSync(path.join(root, 'dist', 'kysely', 'index.d.ts'), 'utf8')).toContain('SqliteHaDialect');
  const main = node(['-e', "const m = require('sqlite-ha'); console.log(JSON.stringify([typeof m.serve, Object.keys(require.cache).some((k) => k.includes('/node_modules/kysely/'))]))"]);
  expect(JSON.parse(main)).toEqual(['function', false]);
});
