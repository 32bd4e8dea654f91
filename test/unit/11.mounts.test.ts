/**
 * Mount verdicts (src/storage/mounts.ts): whether SQLite's POSIX locks cross hosts for a path.
 * docs/HAZARDS.md H2-H5: the product refuses storage where they do not.
 */
import * as fs from 'fs';
import { judgeMount, lockVerdictFor, MountInfo, mountFor, parseMounts } from '../../src/storage/mounts';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir();

function mount(fsType: string, options: string[] = ['rw'], mountPoint = '/data', device = 'dev'): MountInfo {
  return { device, mountPoint, fsType, options };
}

describe('parseMounts', () => {
  test('splits fields and options and decodes octal escapes', () => {
    const text = [
      '/dev/vda / ext4 rw,relatime 0 0',
      'nas:/export/my\\040share /mnt/my\\040share nfs4 rw,vers=4.2,local_lock=none 0 0',
      'tab\\011dev /mnt/back\\134slash xfs ro 0 0',
      '',
      'garbage line',
    ].join('\n');
    expect(parseMounts(text)).toEqual([
      { device: '/dev/vda', mountPoint: '/', fsType: 'ext4', options: ['rw', 'relatime'] },
      { device: 'nas:/export/my share', mountPoint: '/mnt/my share', fsType: 'nfs4', options: ['rw', 'vers=4.2', 'local_lock=none'] },
      { device: 'tab\tdev', mountPoint: '/mnt/back\\slash', fsType: 'xfs', options: ['ro'] },
    ]);
  });

  test('parses the real /proc/mounts, which has a root mount', () => {
    const mounts = parseMounts(fs.readFileSync('/proc/mounts', 'utf8'));
    expect(mounts.length).toBeGreaterThan(0);
    expect(mounts.some((m) => m.mountPoint === '/')).toBe(true);
  });
});

describe('mountFor', () => {
  const mounts = parseMounts(
    [
      'rootdev / ext4 rw 0 0',
      'nas:/a /mnt/data nfs4 rw 0 0',
      'tmpfs /mnt/data/cache tmpfs rw 0 0',
      'other /mnt/data2 xfs rw 0 0',
      'sshfs#x /mnt/space\\040here fuse.sshfs rw 0 0',
    ].join('\n'),
  );

  test.each([
    ['/mnt/data/db.sqlite', 'nas:/a'],
    ['/mnt/data', 'nas:/a'],
    ['/mnt/data/cache/x.db', 'tmpfs'],
    ['/mnt/data2/x.db', 'other'], // not inside /mnt/data: prefix must end at a path separator
    ['/mnt/datax/x.db', 'rootdev'],
    ['/home/u/x.db', 'rootdev'],
    ['/mnt/space here/x.db', 'sshfs#x'],
  ])('%s is on %s (longest mount point wins)', (target, device) => {
    expect(mountFor(target, mounts).device).toBe(device);
  });

  test('the last of several mounts on one point wins (it hides the earlier ones)', () => {
    const stacked = parseMounts('a /mnt/x ext4 rw 0 0\nb /mnt/x nfs4 rw 0 0');
    expect(mountFor('/mnt/x/db', stacked).device).toBe('b');
  });

  test('no mount at all gives an unknown filesystem', () => {
    expect(mountFor('/x/db', [])).toEqual({ device: 'unknown', mountPoint: '/', fsType: 'unknown', options: [] });
    expect(judgeMount(mountFor('/x/db', [])).trusted).toBe(false);
  });
});

describe('judgeMount', () => {
  test.each([
    ['ext4', ['rw', 'relatime']],
    ['xfs', ['rw']],
    ['tmpfs', ['rw']],
    ['overlay', ['rw']],
    ['nfs4', ['rw', 'vers=4.2', 'hard', 'local_lock=none']],
    ['nfs', ['rw', 'vers=3', 'local_lock=none']],
    ['nfs', ['rw', 'vers=3', 'local_lock=flock']], // flock local, POSIX (SQLite's) over the network
  ])('%s %p: locks trusted', (fsType, options) => {
    const v = judgeMount(mount(fsType, options));
    expect(v.trusted).toBe(true);
    expect(v.advice).toBeNull();
    expect(v.reason).toContain(fsType);
  });

  test.each([
    ['nfs', ['rw', 'vers=3', 'nolock'], "'nolock'"],
    ['nfs4', ['rw', 'nolock'], "'nolock'"],
    ['nfs4', ['rw', 'local_lock=posix'], 'local_lock=posix'],
    ['nfs', ['rw', 'local_lock=all'], 'local_lock=all'],
    ['fuse.sshfs', ['rw', 'user_id=0'], 'FUSE'],
    ['fuse', ['rw'], 'FUSE'],
    ['cifs', ['rw'], 'cifs'],
    ['smb3', ['rw'], 'smb3'],
    ['9p', ['rw'], '9p'],
    ['weirdfs', ['rw'], "unknown filesystem type 'weirdfs'"],
  ])('%s %p: not trusted, the reason names %s', (fsType, options, why) => {
    const v = judgeMount(mount(fsType, options));
    expect(v.trusted).toBe(false);
    expect(v.reason).toContain(why);
    expect(typeof v.advice).toBe('string');
    expect(v.advice!.length).toBeGreaterThan(0);
    expect(v.mount.fsType).toBe(fsType);
  });

  test('the reason says where: mount point and device', () => {
    const v = judgeMount(mount('nfs4', ['nolock'], '/srv/shared', 'nas:/vol1'));
    expect(v.reason).toContain('/srv/shared');
    expect(v.reason).toContain('nas:/vol1');
  });
});

describe('lockVerdictFor', () => {
  test('judges the mount of the real directory of a (not yet existing) file', () => {
    const dir = fs.realpathSync(tmp.dir());
    const text = `rootdev / ext4 rw 0 0\nnas:/x ${dir} nfs rw,nolock 0 0\n`;
    const v = lockVerdictFor(tmp.file('missing.db'), text);
    expect(fs.existsSync(tmp.file('missing.db'))).toBe(false);
    expect(v.mount.device).toBe('nas:/x');
    expect(v.trusted).toBe(false);
    expect(lockVerdictFor(tmp.file('missing.db'), `rootdev / ext4 rw 0 0\n`).trusted).toBe(true);
  });

  test('follows symlinks: the verdict is for where the file really lives', () => {
    const real = fs.realpathSync(tmp.dir());
    fs.mkdirSync(`${real}/target`);
    fs.symlinkSync(`${real}/target`, `${real}/link`);
    const text = `rootdev / ext4 rw 0 0\nsshfs#h ${real}/target fuse.sshfs rw 0 0\n`;
    expect(lockVerdictFor(`${real}/link/db.sqlite`, text).trusted).toBe(false);
  });
});
