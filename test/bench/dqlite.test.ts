/**
 * The dqlite comparison's pure parts (tools/cluster/dqlite-process.ts, tools/bench/report.ts): the
 * `dqlite .cluster` table that tells when the demo cluster is ready, and the figure a run without
 * dqlite-demo reports. No processes: the cluster itself is exercised by `npm run bench -- --only dqlite`.
 */
import { allVoters, parseClusterMembers } from '../../tools/cluster/dqlite-process';
import { formatTable, runsFigure, skippedFigure } from '../../tools/bench/report';

const TABLE = [
  '2dc171858c3155be|127.0.0.1:19001|voter',
  '9734086e48a47a33|127.0.0.1:19003|spare',
  'ae20f36f3a3ed39b|127.0.0.1:19002|Voter',
  '',
].join('\n');

describe('parseClusterMembers', () => {
  test('one member per id|address|role line, roles folded to lower case', () => {
    expect(parseClusterMembers(TABLE)).toEqual([
      { id: '2dc171858c3155be', address: '127.0.0.1:19001', role: 'voter' },
      { id: '9734086e48a47a33', address: '127.0.0.1:19003', role: 'spare' },
      { id: 'ae20f36f3a3ed39b', address: '127.0.0.1:19002', role: 'voter' },
    ]);
  });

  test('error text, headers, blank cells and malformed lines are not members', () => {
    const out = [
      'Error: no available dqlite leader server found',
      'ID|Address|Role',
      '|127.0.0.1:1|voter',
      '12ab|127.0.0.1|voter',
      'zz|127.0.0.1:5|voter',
      '12ab|127.0.0.1:5|voter|extra',
    ].join('\n');
    expect(parseClusterMembers(out)).toEqual([]);
    expect(parseClusterMembers('')).toEqual([]);
  });
});

describe('allVoters', () => {
  const members = parseClusterMembers(TABLE);
  test('ready only when every expected address is a voter', () => {
    expect(allVoters(members, ['127.0.0.1:19001', '127.0.0.1:19002'])).toBe(true);
    expect(allVoters(members, ['127.0.0.1:19001', '127.0.0.1:19002', '127.0.0.1:19003'])).toBe(false); // a spare
    expect(allVoters(members, ['127.0.0.1:19004'])).toBe(false); // not joined yet
    expect(allVoters([], ['127.0.0.1:19001'])).toBe(false);
  });
});

describe('the figure without dqlite-demo', () => {
  test('carries no number: SKIP, NaN (null in the JSON), the reason in the table and the summary', () => {
    const f = skippedFigure('dqlite', 'dqlite.seq.ratio', 'sqlite-ha ÷ dqlite', 'x', { op: '>=', value: 2 }, 'skipped: dqlite-demo not installed');
    expect(f.verdict).toBe('SKIP');
    expect(f.value).toBeNaN();
    expect(f.n).toBe(0);
    expect(JSON.parse(JSON.stringify(f))).toMatchObject({ value: null, verdict: 'SKIP', target: { op: '>=', value: 2 } });
    const table = formatTable([f, runsFigure('dqlite', 'dqlite.seq.ha', 'sqlite-ha', 'txn/s', [100, 120, 110])]);
    expect(table).toMatch(/sqlite-ha ÷ dqlite\s+skipped/);
    expect(table).toContain('skipped: dqlite-demo not installed');
    expect(table).not.toContain('NaN');
    expect(table).toMatch(/0 PASS, 0 MISS, 1 SKIP \(dqlite\.seq\.ratio\)/);
  });

  test('a measured ratio gets PASS or MISS against 2×', () => {
    const target = { op: '>=', value: 2 } as const;
    expect(runsFigure('dqlite', 'r', 'r', 'x', [2.1, 1.9, 2.5], { target }).verdict).toBe('PASS');
    expect(runsFigure('dqlite', 'r', 'r', 'x', [0.1, 0.2, 0.15], { target }).verdict).toBe('MISS');
  });
});
