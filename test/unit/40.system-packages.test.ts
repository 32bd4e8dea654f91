import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// scripts/ is plain JavaScript run before anything is built (npm run setup, npm test's first step).
// eslint-disable-next-line @typescript-eslint/no-var-requires
const system = require('../../scripts/system.js') as {
  packages: { package: string }[];
  globMatches(glob: string): boolean;
};

describe('the system package check', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-system-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reports a glob whose directory does not exist yet as missing instead of throwing', () => {
    // A fresh machine has no /usr/lib/x86_64-linux-gnu/ganesha until nfs-ganesha is installed.
    expect(system.globMatches(path.join(dir, 'not-there', 'libfsalvfs*'))).toBe(false);
  });

  it('matches a glob by prefix and takes the rest of the name literally', () => {
    fs.writeFileSync(path.join(dir, 'libfsalvfs.so.4'), '');
    expect(system.globMatches(path.join(dir, 'libfsalvfs*'))).toBe(true);
    expect(system.globMatches(path.join(dir, 'libfsal.fs*'))).toBe(false);
  });

  it('lists every package once', () => {
    const names = system.packages.map((p) => p.package);
    expect(new Set(names).size).toBe(names.length);
  });
});
