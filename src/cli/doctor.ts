/**
 * `sqlite-ha doctor <path>`: checks where a database lives and how it would be run, one finding per
 * check, each with a verdict (ok, warn, fail, or skip with the reason) and what to do. Exit 1 when
 * any check fails.
 *
 * The mount table comes from /proc/mounts; SQLITE_HA_MOUNTS_FILE (undocumented outside docs/CLI.md,
 * for tests) names a file in the same format to read instead.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as path from 'path';
import { DatabaseInfo, Keys, parseJson } from '../coordinator/etcd/keys';
import { DEFAULTS, defaultSafetyMarginMs } from '../options';
import { LockVerdict, lockVerdictFor, MountInfo } from '../storage/mounts';
import { hasMetaTable, readMetaAnyVersion } from '../storage/meta';
import { judgeNfsSettings, MountStats, parseMountStats } from '../storage/nfs-settings';
import { isHotJournalReadOnly } from '../storage/sqlite-errors';
import { ConnectionSettings, createClient, withDeadline } from './connection';
import { compactionFinding, readCompactionState } from './compaction';
import { duration, jsonText, printable, styleFor } from './format';

/** doctor warns when etcd was never compacted past this many revisions. */
const COMPACTION_WARN_REVISIONS = 100_000;

export type Verdict = 'ok' | 'warn' | 'fail' | 'skip';

export interface Finding {
  check: 'directory' | 'filesystem' | 'nfs' | 'locks' | 'database' | 'fsync' | 'etcd' | 'compaction' | 'clock' | 'lease' | 'standby';
  verdict: Verdict;
  summary: string;
  /** What to do; null when nothing is needed. */
  advice: string | null;
  data?: Record<string, unknown>;
}

export interface DoctorOptions {
  json?: boolean;
  name?: string;
  leaseTtlMs?: number;
  safetyMarginMs?: number;
  fsyncSamples: number;
  /** The standby directory to judge (open() option standby.dir). */
  standby?: string;
  /** Warn about compaction when etcd was never compacted past this revision. Default 100000. */
  compactionRevisions?: number;
}

export interface DoctorReport {
  path: string;
  findings: Finding[];
  ok: boolean;
}

export async function runDoctor(
  s: ConnectionSettings, file: string, opts: DoctorOptions, out: NodeJS.WriteStream,
): Promise<number> {
  const report = await diagnose(s, file, opts);
  if (opts.json) {
    out.write(jsonText(report, 2) + '\n');
  } else {
    const st = styleFor(out);
    const paint = (v: Verdict) =>
      v === 'ok' ? st.green('ok  ') : v === 'warn' ? st.yellow('warn') : v === 'fail' ? st.red('fail') : st.dim('skip');
    const lines = [`sqlite-ha doctor ${printable(report.path)}`, ''];
    // Summaries quote etcd's info record and the file system: escaped before reaching the terminal.
    for (const f of report.findings) {
      lines.push(`  ${paint(f.verdict)}  ${f.check.padEnd(10)}  ${printable(f.summary)}`);
      if (f.advice) lines.push(`${' '.repeat(20)}-> ${printable(f.advice)}`);
    }
    const count = (v: Verdict) => report.findings.filter((f) => f.verdict === v).length;
    lines.push('', `${count('fail')} failed, ${count('warn')} warnings, ${count('ok')} ok, ${count('skip')} skipped`);
    out.write(lines.join('\n') + '\n');
  }
  return report.ok ? 0 : 1;
}

async function diagnose(s: ConnectionSettings, file: string, opts: DoctorOptions): Promise<DoctorReport> {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const findings: Finding[] = [];
  const dirOk = checkDirectory(dir, findings);
  let fsync: FsyncStats | null = null;
  let untrusted = false;
  if (dirOk) {
    const mountsText = readMountsText();
    const verdict = lockVerdictFor(target, mountsText);
    findings.push(filesystemFinding(verdict.mount));
    if (verdict.mount.fsType === 'nfs' || verdict.mount.fsType === 'nfs4') findings.push(...nfsFindings(verdict.mount, target));
    untrusted = !verdict.trusted;
    findings.push(locksFinding(verdict));
    findings.push(databaseFinding(target));
    fsync = measureFsync(dir, opts.fsyncSamples);
    findings.push(fsyncFinding(dir, fsync));
  }

  const name = opts.name ?? path.basename(target);
  let rttP99: number | null = null;
  let info: DatabaseInfo | null = null;
  if (!s.explicitEndpoints) {
    const why = 'not checked: no etcd endpoints given (--endpoints or SQLITE_HA_ETCD_ENDPOINTS)';
    findings.push({ check: 'etcd', verdict: 'skip', summary: why, advice: null });
    findings.push({ check: 'clock', verdict: 'skip', summary: why, advice: null });
  } else {
    const e = await etcdFindings(s, name, opts.compactionRevisions ?? COMPACTION_WARN_REVISIONS);
    findings.push(...e.findings);
    rttP99 = e.rttP99;
    info = e.info;
    const locks = findings.find((f) => f.check === 'locks');
    if (locks) modeAgreement(locks, info);
  }
  findings.push(leaseFinding(opts, info, fsync, rttP99, untrusted));
  if (opts.standby !== undefined) findings.push(standbyFinding(target, path.resolve(opts.standby), readMountsText()));
  return { path: target, findings, ok: !findings.some((f) => f.verdict === 'fail') };
}

/**
 * Trusted locks: ok. Untrusted: a warning, not a failure, since with the etcd coordinator open()
 * runs such a file in the lockless mode (locks: 'none'); the lockfile coordinator refuses it.
 */
function locksFinding(verdict: LockVerdict): Finding {
  const data = { trusted: verdict.trusted, mode: verdict.trusted ? 'trusted' : 'none', mountPoint: verdict.mount.mountPoint, fsType: verdict.mount.fsType };
  if (verdict.trusted) {
    return { check: 'locks', verdict: 'ok', summary: `cross-host locks can be trusted: ${verdict.reason}`, advice: null, data };
  }
  const fix = verdict.advice ?? '';
  return {
    check: 'locks', verdict: 'warn',
    summary: `cross-host locks cannot be trusted: ${verdict.reason}. With the etcd coordinator sqlite-ha runs this file ` +
      "in the lockless mode (locks: 'none'): reads register in etcd and wait out commits, writes go through " +
      'db.write() only, and an unclean hand-over waits out the old lease (docs/HAZARDS.md H2-H5); the lockfile coordinator refuses it',
    advice: `for the faster trusted mode and the full better-sqlite3 surface: ${fix || 'use storage whose POSIX locks reach every host'}`,
    data,
  };
}

/** Every node must run a database in the same mode; the holder's info record says which it uses. */
function modeAgreement(locks: Finding, info: DatabaseInfo | null): void {
  if (!info || !locks.data) return;
  locks.data.holderMode = info.locks;
  if (info.locks === locks.data.mode) return;
  locks.verdict = 'fail';
  locks.summary += `; but ${info.node}, the last holder, runs it with locks '${info.locks}' (from ${info.path})`;
  locks.advice = "every node must use the same mode: set the same 'locks' option everywhere, or give every node the same kind of mount";
}

/**
 * The standby exists to survive the loss of the primary's storage: it must live on another device
 * and another filesystem (not the same export mounted twice).
 */
function standbyFinding(dbPath: string, dir: string, mountsText: string): Finding {
  let devDir: number;
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error('not a directory');
    devDir = fs.statSync(dir).dev;
  } catch (err) {
    return { check: 'standby', verdict: 'fail', summary: `standby directory ${dir} is not usable (${(err as Error).message})`, advice: 'mount the standby volume and create the directory' };
  }
  const devDb = fs.statSync(path.dirname(dbPath)).dev;
  const a = lockVerdictFor(dbPath, mountsText).mount;
  const b = lockVerdictFor(path.join(dir, 'x'), mountsText).mount;
  const data = { dir, sameDevice: devDir === devDb, primaryMount: a.mountPoint, primarySource: a.device, standbyMount: b.mountPoint, standbySource: b.device, standbyFsType: b.fsType };
  if (devDir === devDb || a.mountPoint === b.mountPoint || a.device === b.device) {
    return {
      check: 'standby', verdict: 'warn',
      summary: `standby ${dir} is on the same ${devDir === devDb ? 'device' : 'filesystem'} as the database (${b.device} at ${b.mountPoint}): losing one loses both`,
      advice: 'put the standby on another volume: a second NFS export from another server, or a local disk',
      data,
    };
  }
  return { check: 'standby', verdict: 'ok', summary: `standby ${dir} is on another device and filesystem (${b.fsType} ${b.device} at ${b.mountPoint})`, advice: null, data };
}

function readMountsText(): string {
  const f = process.env.SQLITE_HA_MOUNTS_FILE;
  return fs.readFileSync(f && f.length > 0 ? f : '/proc/mounts', 'utf8');
}

function checkDirectory(dir: string, findings: Finding[]): boolean {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    findings.push({
      check: 'directory', verdict: 'fail', summary: `${dir} does not exist`,
      advice: 'create the directory on the shared filesystem (and mount it on every node) first',
    });
    return false;
  }
  if (!st.isDirectory()) {
    findings.push({ check: 'directory', verdict: 'fail', summary: `${dir} is not a directory`, advice: 'give the path of a database file' });
    return false;
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    findings.push({
      check: 'directory', verdict: 'fail', summary: `${dir} is not writable by this user`,
      advice: 'SQLite creates its journal beside the database: the directory must be writable on every node',
    });
    return false;
  }
  findings.push({ check: 'directory', verdict: 'ok', summary: `${dir} exists and is writable`, advice: null });
  return true;
}

function filesystemFinding(m: { device: string; mountPoint: string; fsType: string; options: string[] }): Finding {
  const summary = `${m.fsType} from ${m.device} at ${m.mountPoint} (${m.options.join(',')})`;
  const data = { fsType: m.fsType, device: m.device, mountPoint: m.mountPoint, options: m.options };
  if (m.options.includes('ro')) {
    return { check: 'filesystem', verdict: 'fail', summary: `${summary}: mounted read-only`, advice: 'mount it read-write', data };
  }
  if ((m.fsType === 'nfs' || m.fsType === 'nfs4') && m.options.includes('soft')) {
    return {
      check: 'filesystem', verdict: 'warn', summary: `${summary}: a 'soft' NFS mount`,
      advice: "use 'hard': a soft mount turns a slow server into I/O errors mid-commit, whose outcome is unknown",
      data,
    };
  }
  return { check: 'filesystem', verdict: 'ok', summary, advice: null, data };
}

/** One finding per NFS setting (src/storage/nfs-settings.ts), from mountstats and the file's owner. */
function nfsFindings(mount: MountInfo, target: string): Finding[] {
  let stats: MountStats | null = null;
  try {
    stats = parseMountStats(fs.readFileSync('/proc/self/mountstats', 'utf8')).filter((m) => m.mountPoint === mount.mountPoint).pop() ?? null;
  } catch {
    /* not Linux, or not readable: the options from /proc/mounts still say most */
  }
  let owner: number | null = null;
  for (const p of [target, path.dirname(target)]) {
    try {
      owner = fs.statSync(p).uid;
      break;
    } catch {
      /* the file may not exist yet */
    }
  }
  const euid = typeof process.geteuid === 'function' ? process.geteuid() : null;
  return judgeNfsSettings(mount, stats, owner, euid).map((x) => ({
    check: 'nfs' as const, verdict: x.verdict, summary: `${x.setting}: ${x.summary}`, advice: x.advice, data: { setting: x.setting },
  }));
}

function databaseFinding(file: string): Finding {
  const pinned = 'sqlite-ha pins journal_mode=TRUNCATE|PERSIST, synchronous=FULL, locking_mode=NORMAL on every connection';
  if (!fs.existsSync(file)) {
    return { check: 'database', verdict: 'ok', summary: `${path.basename(file)} does not exist yet; open() creates it (${pinned})`, advice: null };
  }
  const side = (suffix: string) => fs.existsSync(file + suffix);
  const header = Buffer.alloc(100);
  const fd = fs.openSync(file, 'r');
  let n: number;
  try {
    n = fs.readSync(fd, header, 0, 100, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (n === 0) {
    return { check: 'database', verdict: 'ok', summary: `${path.basename(file)} is empty (a valid new database)`, advice: null };
  }
  if (n < 100 || header.subarray(0, 16).toString('latin1') !== 'SQLite format 3\u0000') {
    return {
      check: 'database', verdict: 'fail', summary: `${file} is not an SQLite database`,
      advice: 'point doctor (and open()) at the database file itself',
    };
  }
  const wal = header[18] === 2 || header[19] === 2;
  if (wal || side('-wal') || side('-shm')) {
    return {
      check: 'database', verdict: 'fail',
      summary: wal ? 'the file is in WAL format' : 'WAL files (-wal/-shm) lie beside the database',
      advice: "WAL cannot work across hosts (docs/HAZARDS.md H1): with every node stopped, run sqlite3 <file> 'PRAGMA journal_mode=TRUNCATE' on one host",
      data: { walFormat: wal },
    };
  }
  const data: Record<string, unknown> = { format: 'rollback journal', sqliteHeaderVersion: header.readUInt32BE(96) };
  let hotJournal = false;
  if (side('-journal')) {
    const j = Buffer.alloc(8);
    const jfd = fs.openSync(file + '-journal', 'r');
    try {
      hotJournal = fs.readSync(jfd, j, 0, 8, 0) > 0 && j.some((b) => b !== 0);
    } finally {
      fs.closeSync(jfd);
    }
  }
  let conn: Database.Database | null = null;
  try {
    // Read-only: it can never roll a journal back (docs/HAZARDS.md H2).
    conn = new Database(file, { readonly: true, fileMustExist: true });
    conn.pragma('busy_timeout = 2000');
    const p = (name: string) => conn!.pragma(name, { simple: true });
    Object.assign(data, {
      pageSize: p('page_size'), pageCount: p('page_count'), freelistCount: p('freelist_count'),
      autoVacuum: ['none', 'full', 'incremental'][Number(p('auto_vacuum'))] ?? p('auto_vacuum'),
      encoding: p('encoding'), userVersion: p('user_version'),
    });
    const hasMeta = hasMetaTable(conn);
    if (hasMeta) {
      const meta = readMetaAnyVersion(conn);
      data.fence = meta.fence;
      data.txid = meta.txid;
      if (meta.epoch !== undefined) data.epoch = meta.epoch;
    }
    const summary = `rollback-journal format, page_size ${data.pageSize}, ${data.pageCount} pages, ` +
      (hasMeta ? `fence ${data.fence}, txid ${data.txid}` : 'not yet written through sqlite-ha') + `; ${pinned}`;
    if (hotJournal) {
      return {
        check: 'database', verdict: 'warn', summary: `${summary}; a hot journal lies beside it (a write in progress or a crashed writer)`,
        advice: 'nothing to do if a node is writing now; otherwise the next lease holder rolls it back before anyone reads (docs/HAZARDS.md H8)',
        data,
      };
    }
    return { check: 'database', verdict: 'ok', summary, advice: null, data };
  } catch (err) {
    if (isHotJournalReadOnly(err) || hotJournal) {
      return {
        check: 'database', verdict: 'warn', summary: 'a hot journal lies beside the database; a read-only look cannot read past it',
        advice: 'the next lease holder rolls it back (docs/HAZARDS.md H8); if no node runs, open it once through sqlite-ha',
        data,
      };
    }
    return {
      check: 'database', verdict: 'fail', summary: `cannot read the database read-only: ${(err as Error).message}`,
      advice: 'check file permissions and that the file is not corrupt (sqlite3 <file> "PRAGMA integrity_check")',
      data,
    };
  } finally {
    conn?.close();
  }
}

interface FsyncStats {
  samples: number;
  p50Ms: number;
  maxMs: number;
  meanMs: number;
}

/** Writes 4 KiB and fsyncs it `samples` times in a scratch file in `dir` (removed afterwards). */
function measureFsync(dir: string, samples: number): FsyncStats | null {
  const scratch = path.join(dir, `.sqlite-ha-doctor-${process.pid}-${Date.now()}.tmp`);
  const times: number[] = [];
  let fd: number | null = null;
  try {
    fd = fs.openSync(scratch, 'w');
    const page = Buffer.alloc(4096, 0x5a);
    for (let i = 0; i < samples; i++) {
      fs.writeSync(fd, page, 0, page.length, (i % 4) * 4096);
      const t = process.hrtime.bigint();
      fs.fsyncSync(fd);
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  } catch {
    return null;
  } finally {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(scratch, { force: true });
  }
  times.sort((a, b) => a - b);
  return {
    samples,
    p50Ms: times[Math.floor(times.length / 2)],
    maxMs: times[times.length - 1],
    meanMs: times.reduce((a, b) => a + b, 0) / times.length,
  };
}

function fsyncFinding(dir: string, f: FsyncStats | null): Finding {
  if (!f) {
    return { check: 'fsync', verdict: 'fail', summary: `could not write and fsync a scratch file in ${dir}`, advice: 'check free space and permissions' };
  }
  const summary = `fsync p50 ${f.p50Ms.toFixed(2)} ms, max ${f.maxMs.toFixed(2)} ms over ${f.samples} syncs of 4 KiB in ${dir}`;
  const data = { ...f };
  if (f.p50Ms > 20) {
    return {
      check: 'fsync', verdict: 'warn', summary,
      advice: 'each commit with synchronous=FULL syncs about 3 times: expect slow writes; batch work into fewer transactions',
      data,
    };
  }
  return { check: 'fsync', verdict: 'ok', summary, advice: null, data };
}

async function etcdFindings(
  s: ConnectionSettings, name: string, compactionRevisions: number,
): Promise<{ findings: Finding[]; rttP99: number | null; info: DatabaseInfo | null }> {
  const client = createClient(s);
  const findings: Finding[] = [];
  try {
    let version = '?';
    const rtts: number[] = [];
    let info: DatabaseInfo | null = null;
    try {
      await withDeadline(s, 'status', async () => {
        const st = await client.maintenance.status();
        version = st.version;
        for (let i = 0; i < 10; i++) {
          const t = process.hrtime.bigint();
          await client.kv.range({ key: Buffer.from(new Keys(s.prefix, name).info) });
          rtts.push(Number(process.hrtime.bigint() - t) / 1e6);
        }
        const res = await client.kv.range({ key: Buffer.from(new Keys(s.prefix, name).info) });
        info = parseJson<DatabaseInfo>(res.kvs[0]?.value);
      });
    } catch (err) {
      findings.push({
        check: 'etcd', verdict: 'fail', summary: (err as Error).message,
        advice: 'nodes cannot take write leases while etcd is unreachable',
      });
      findings.push({ check: 'clock', verdict: 'skip', summary: 'not checked: etcd is unreachable', advice: null });
      return { findings, rttP99: null, info: null };
    }
    rtts.sort((a, b) => a - b);
    const p50 = rtts[Math.floor(rtts.length / 2)];
    const p99 = rtts[rtts.length - 1];
    findings.push({
      check: 'etcd', verdict: p99 > 100 ? 'warn' : 'ok',
      summary: `etcd ${version} at ${s.endpoints.join(',')}: read round trip p50 ${p50.toFixed(2)} ms, max ${p99.toFixed(2)} ms over ${rtts.length}`,
      advice: p99 > 100 ? 'slow etcd round trips eat into the lease safety margin; run etcd close to the nodes on fast disks' : null,
      data: { version, rttP50Ms: p50, rttMaxMs: p99 },
    });
    try {
      const state = await withDeadline(s, 'compaction', () => readCompactionState(client, new Keys(s.prefix, name).info));
      findings.push(compactionFinding(state, compactionRevisions));
    } catch (err) {
      findings.push({ check: 'compaction', verdict: 'skip', summary: `not checked: ${(err as Error).message}`, advice: null });
    }
    findings.push(await clockFinding(s));
    return { findings, rttP99: p99, info };
  } finally {
    client.close();
  }
}

/**
 * Clock offset against etcd. etcd's API carries no time, but its HTTP endpoint (/version) sends a
 * Date header with 1 s resolution; asking repeatedly until that second ticks over locates the
 * server's second boundary to within one round trip (the htpdate method).
 */
async function clockFinding(s: ConnectionSettings): Promise<Finding> {
  const url = new URL('/version', s.endpoints[0]);
  const agentOpts = { keepAlive: true, maxSockets: 1 };
  const agent = url.protocol === 'https:'
    ? new https.Agent({ ...agentOpts, ca: s.tls?.ca, cert: s.tls?.cert, key: s.tls?.key })
    : new http.Agent(agentOpts);
  try {
    // Capped by time, not by probe count: on a fast loopback thousands of probes fit in one second,
    // and the Date header must be seen to tick at least once (> 1 s of probing).
    const deadline = Date.now() + Math.max(2500, s.timeoutMs);
    let prev = await probeDate(url, agent, s.timeoutMs);
    let boundary: { localMs: number; serverMs: number; uncertaintyMs: number } | null = null;
    while (Date.now() < deadline) {
      const cur = await probeDate(url, agent, s.timeoutMs);
      if (cur.serverSec !== prev.serverSec) {
        // The server's clock passed cur.serverSec * 1000 between the two requests.
        boundary = {
          localMs: (prev.sentMs + cur.receivedMs) / 2,
          serverMs: cur.serverSec * 1000,
          uncertaintyMs: (cur.receivedMs - prev.sentMs) / 2,
        };
        break;
      }
      prev = cur;
    }
    if (!boundary) {
      return { check: 'clock', verdict: 'warn', summary: `could not time etcd's clock at ${url.origin} (its Date header did not advance)`, advice: null };
    }
    const offset = boundary.serverMs - boundary.localMs;
    const summary = `local clock is ${Math.abs(offset).toFixed(0)} ms ${offset > 0 ? 'behind' : 'ahead of'} etcd at ${url.host} ` +
      `(±${boundary.uncertaintyMs.toFixed(0)} ms)`;
    const data = { offsetMs: offset, uncertaintyMs: boundary.uncertaintyMs, endpoint: url.origin };
    if (Math.abs(offset) - boundary.uncertaintyMs > 250) {
      return {
        check: 'clock', verdict: 'warn', summary,
        advice: 'run chrony or ntpd on every node: leases use local intervals, but commit ages, queue times and hand-over ' +
          'latencies compare clocks of different hosts, and so does the lockfile coordinator',
        data,
      };
    }
    return { check: 'clock', verdict: 'ok', summary, advice: null, data };
  } catch (err) {
    return {
      check: 'clock', verdict: 'warn', summary: `could not read etcd's clock at ${url.origin}/version: ${(err as Error).message}`,
      advice: null,
    };
  } finally {
    agent.destroy();
  }
}

function probeDate(url: URL, agent: http.Agent, timeoutMs: number): Promise<{ serverSec: number; sentMs: number; receivedMs: number }> {
  return new Promise((resolve, reject) => {
    const sentMs = Date.now();
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.get(url, { agent, timeout: timeoutMs }, (res) => {
      const receivedMs = Date.now();
      res.resume();
      const date = res.headers.date;
      const parsed = date ? Date.parse(date) : NaN;
      if (!Number.isFinite(parsed)) reject(new Error('no Date header'));
      else resolve({ serverSec: Math.floor(parsed / 1000), sentMs, receivedMs });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

function leaseFinding(
  opts: DoctorOptions, info: DatabaseInfo | null, fsync: FsyncStats | null, etcdRttMs: number | null, untrusted: boolean,
): Finding {
  const source = opts.leaseTtlMs !== undefined ? 'from --lease-ttl-ms' : info ? `from the info record written by ${info.node}` : 'the default';
  const ttl = opts.leaseTtlMs ?? info?.leaseTtlMs ?? DEFAULTS.leaseTtlMs;
  const margin = opts.safetyMarginMs ?? defaultSafetyMarginMs(ttl);
  const data: Record<string, unknown> = { leaseTtlMs: ttl, safetyMarginMs: margin, source };
  if (info) data.info = info;
  const base = `TTL ${duration(ttl)} (${source}), safety margin ${duration(margin)}: keep-alive every ${duration(ttl / 3)}; ` +
    `a crashed holder blocks writes for up to ${duration(ttl)}` + (untrusted ? ` plus the lockless wait` : '');
  if (ttl < 2000) {
    return { check: 'lease', verdict: 'fail', summary: `${base}; etcd leases are at least 2 s`, advice: 'use leaseTtlMs >= 2000', data };
  }
  if (margin >= ttl / 2) {
    return { check: 'lease', verdict: 'fail', summary: `${base}; the margin must be under half the TTL`, advice: 'lower safetyMarginMs or raise leaseTtlMs', data };
  }
  const notes: string[] = [];
  if (ttl % 1000 !== 0) notes.push(`etcd grants whole seconds, so ${ttl} ms becomes ${Math.ceil(ttl / 1000)} s`);
  // A commit started just before the margin begins must finish (about 3 syncs) before the lease can lapse.
  const commitMs = fsync ? 3 * fsync.maxMs : 0;
  const need = commitMs + (etcdRttMs ?? 0);
  if (need > margin) {
    notes.push(`a commit here takes up to ~${need.toFixed(0)} ms (3 fsyncs${etcdRttMs !== null ? ' + one etcd round trip' : ''}), more than the margin`);
  }
  if (notes.length) {
    return {
      check: 'lease', verdict: 'warn', summary: `${base}; ${notes.join('; ')}`,
      advice: ttl % 1000 !== 0 && need <= margin ? 'use a whole number of seconds for leaseTtlMs' : 'raise safetyMarginMs (and leaseTtlMs with it)',
      data,
    };
  }
  return { check: 'lease', verdict: 'ok', summary: base, advice: null, data };
}
