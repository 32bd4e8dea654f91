/**
 * sqlite-ha/kysely with real Kysely on a real etcd: migrations (Kysely's Migrator), typed queries,
 * transactions that commit or roll back, savepoints, two handles on one file taking turns for the
 * lease, and a lost lease failing the open transaction.
 */
import { Kysely, Migrator, Migration, sql } from 'kysely';
import { HADatabase, open } from '../../src';
import { SqliteHaDialect } from '../../src/kysely';
import { useEtcd } from '../helpers/etcd';
import { useTmpDir } from '../helpers/tmp';
import { runCli } from '../cli/helpers';

interface Schema {
  person: { id: number | null; name: string; age: number };
  pet: { id: number | null; owner_id: number; name: string };
}

const etcd = useEtcd();
const tmp = useTmpDir('sqlite-ha-kysely-');
let n = 0;

async function handle(nodeId: string, prefix: string): Promise<HADatabase> {
  const db = await open(tmp.file(), {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix }, nodeId, leaseTtlMs: 2000, acquireTimeoutMs: 8000,
  });
  tmp.defer(() => db.close());
  return db;
}

function kysely(db: HADatabase): Kysely<Schema> {
  const k = new Kysely<Schema>({ dialect: new SqliteHaDialect({ database: db }) });
  tmp.defer(() => k.destroy());
  return k;
}

const migrations: Record<string, Migration> = {
  '001_person': {
    up: async (k) => {
      await k.schema.createTable('person')
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('age', 'integer', (c) => c.notNull())
        .execute();
    },
    down: async (k) => k.schema.dropTable('person').execute(),
  },
  '002_pet': {
    up: async (k) => {
      await k.schema.createTable('pet')
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('owner_id', 'integer', (c) => c.notNull().references('person.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .execute();
      await k.schema.createIndex('pet_owner').on('pet').column('owner_id').execute();
    },
  },
};

async function migrated(k: Kysely<Schema>): Promise<void> {
  const { error, results } = await new Migrator({ db: k, provider: { getMigrations: async () => migrations } }).migrateToLatest();
  expect(error).toBeUndefined();
  expect(results?.map((r) => r.status)).toEqual(['Success', 'Success']);
}

test('migrations, inserts, joins, updates and deletes through Kysely', async () => {
  const db = await handle('k1', `/kysely-${++n}`);
  const k = kysely(db);
  await migrated(k);
  const tables = (await k.introspection.getTables()).map((t) => t.name).sort();
  expect(tables).toEqual(expect.arrayContaining(['person', 'pet']));
  const ins = await k.insertInto('person').values({ name: 'Ada', age: 36 }).executeTakeFirstOrThrow();
  expect(ins.insertId).toBe(1n);
  await k.insertInto('person').values([{ name: 'Grace', age: 45 }, { name: 'Linus', age: 21 }]).execute();
  await k.insertInto('pet').values({ owner_id: 1, name: 'Byron' }).execute();
  const joined = await k.selectFrom('person').innerJoin('pet', 'pet.owner_id', 'person.id')
    .select(['person.name as owner', 'pet.name as pet']).execute();
  expect(joined).toEqual([{ owner: 'Ada', pet: 'Byron' }]);
  const upd = await k.updateTable('person').set({ age: sql`age + 1` }).where('age', '>', 30).executeTakeFirst();
  expect(upd.numUpdatedRows).toBe(2n);
  const returned = await k.insertInto('person').values({ name: 'Ken', age: 80 }).returning(['id', 'name']).executeTakeFirstOrThrow();
  expect(returned).toEqual({ id: 4, name: 'Ken' });
  await k.deleteFrom('person').where('name', '=', 'Linus').execute();
  expect((await k.selectFrom('person').select('name').orderBy('name').execute()).map((r) => r.name)).toEqual(['Ada', 'Grace', 'Ken']);
  // Migrating again is a no-op (Kysely's lock table and migration table work through the dialect).
  const again = await new Migrator({ db: k, provider: { getMigrations: async () => migrations } }).migrateToLatest();
  expect(again.error).toBeUndefined();
  expect(again.results).toEqual([]);
});

test('transactions commit or roll back as a whole; savepoints; reads outside run locally', async () => {
  const db = await handle('k1', `/kysely-${++n}`);
  const k = kysely(db);
  await migrated(k);
  await k.transaction().execute(async (tx) => {
    await tx.insertInto('person').values({ name: 'A', age: 1 }).execute();
    const seen = await tx.selectFrom('person').select('name').execute();
    expect(seen).toEqual([{ name: 'A' }]); // sees its own write
    await tx.insertInto('pet').values({ owner_id: 1, name: 'p' }).execute();
  });
  await expect(k.transaction().execute(async (tx) => {
    await tx.insertInto('person').values({ name: 'B', age: 2 }).execute();
    await tx.insertInto('person').values({ name: 'A', age: 3 }).execute(); // UNIQUE violation
  })).rejects.toMatchObject({ code: 'SQLITE_CONSTRAINT_UNIQUE' });
  expect((await k.selectFrom('person').select('name').execute()).map((r) => r.name)).toEqual(['A']);
  // Savepoints (Kysely's controlled transactions).
  const trx = await k.startTransaction().execute();
  await trx.insertInto('person').values({ name: 'C', age: 4 }).execute();
  const sp = await trx.savepoint('before_d').execute();
  await sp.insertInto('person').values({ name: 'D', age: 5 }).execute();
  await sp.rollbackToSavepoint('before_d').execute();
  await trx.commit().execute();
  expect((await k.selectFrom('person').select('name').orderBy('name').execute()).map((r) => r.name)).toEqual(['A', 'C']);
  // Concurrent transactions on one handle take turns (one read-write connection).
  await Promise.all([1, 2, 3, 4].map((i) => k.transaction().execute(async (tx) => {
    const { c } = await tx.selectFrom('person').select((e) => e.fn.countAll<number>().as('c')).executeTakeFirstOrThrow();
    await tx.insertInto('person').values({ name: `T${i}`, age: Number(c) }).execute();
  })));
  const ages = (await k.selectFrom('person').select('age').where('name', 'like', 'T%').orderBy('age').execute()).map((r) => r.age);
  expect(ages).toEqual([2, 3, 4, 5]); // each saw the previous ones: serialized, no lost update
});

test('two handles on one file: each Kysely write waits for the lease, none is lost', async () => {
  const prefix = `/kysely-${++n}`;
  const a = kysely(await handle('ka', prefix));
  const dbB = await handle('kb', prefix);
  const b = kysely(dbB);
  await migrated(a);
  const bump = (k: Kysely<Schema>, who: string) => k.transaction().execute(async (tx) => {
    await tx.insertInto('person').values({ name: who, age: 0 }).onConflict((oc) => oc.column('name').doNothing()).execute();
    await tx.updateTable('person').set({ age: sql`age + 1` }).where('name', '=', 'counter').execute();
  });
  await a.insertInto('person').values({ name: 'counter', age: 0 }).execute();
  const runs: Promise<unknown>[] = [];
  for (let i = 0; i < 10; i++) runs.push(bump(a, 'a'), bump(b, 'b'));
  await Promise.all(runs);
  const row = await b.selectFrom('person').select('age').where('name', '=', 'counter').executeTakeFirstOrThrow();
  expect(row.age).toBe(20);
  expect(dbB.lease.fence).not.toBeNull(); // b took the lease for its share
}, 90000);

test('a lost lease fails the open transaction; nothing of it is committed', async () => {
  const prefix = `/kysely-${++n}`;
  const db = await handle('k1', prefix);
  const k = kysely(db);
  await migrated(k);
  const trx = await k.startTransaction().execute();
  await trx.insertInto('person').values({ name: 'doomed', age: 1 }).execute();
  const rel = await runCli(['release', 'db.sqlite', '--force', '--yes', '--endpoints', etcd.cluster().endpoints.join(','), '--prefix', prefix]);
  expect(rel.code).toBe(0);
  for (let i = 0; i < 100 && db.lease.held; i++) await new Promise((r) => setTimeout(r, 50));
  await expect(trx.selectFrom('person').selectAll().execute()).rejects.toMatchObject({ code: 'SQLITE_HA_LEASE_LOST' });
  await expect(trx.commit().execute()).rejects.toMatchObject({ code: 'SQLITE_HA_LEASE_LOST' });
  expect(await k.selectFrom('person').selectAll().execute()).toEqual([]);
}, 60000);
