/**
 * `sqlite-ha monitor` in a real terminal (tmux): it redraws in place, shows a hand-over between
 * two real sqlite-ha nodes live, and Ctrl-C leaves the terminal as it found it (main screen back,
 * cursor visible, cooked mode, no leftover text). Run after `npm run build`.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EtcdCluster } from '../../tools/cluster/etcd-process';
import { CLI, killAll, startHolder, waitFor, waitLine } from './helpers';

jest.setTimeout(60000);

const SOCKET = `sqlite-ha-cli-${process.pid}`;
let cluster: EtcdCluster;
let dir: string;

function tmux(...args: string[]): string {
  const r = spawnSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}
const screen = () => tmux('capture-pane', '-p', '-t', 'mon');
const paneVar = (name: string) => tmux('display-message', '-p', '-t', 'mon', `#{${name}}`).trim();

beforeAll(async () => {
  cluster = await EtcdCluster.start({ members: 1 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-tty-'));
});

afterAll(async () => {
  spawnSync('tmux', ['-L', SOCKET, 'kill-server']);
  await killAll();
  await cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('monitor shows a hand-over live in a terminal and Ctrl-C leaves it clean', async () => {
  const prefix = '/t-tty';
  const node = (nodeId: string) => startHolder({ db: path.join(dir, 'tty.db'), endpoints: cluster.endpoints, prefix, nodeId, ttlMs: 2000 });
  const a = node('node-a');
  const aWrote = await waitLine<{ ev: string; fence: number }>(a, (o) => o.ev === 'wrote', 'node-a to write');

  tmux('new-session', '-d', '-s', 'mon', '-x', '120', '-y', '40', 'env -i PATH="$PATH" HOME="$HOME" TERM=xterm-256color bash --norc --noprofile');
  tmux('send-keys', '-t', 'mon', "PS1='READY$ '; clear", 'Enter');
  await waitFor('the shell prompt', () => screen().includes('READY$'), 5000);
  const cmd = `NO_COLOR=1 ${process.execPath} ${CLI} monitor --endpoints ${cluster.endpoints.join(',')} --prefix ${prefix}`;
  tmux('send-keys', '-t', 'mon', cmd, 'Enter');

  const first = await waitFor('the monitor to draw node-a as holder', () => {
    const s = screen();
    return /^tty\.db\s+node-a\s+\d+\s+\[[#.]{20}\] [\d.]+s\/2\.0s\s+-$/m.test(s) && s.includes('RECENT EVENTS') ? s : undefined;
  }, 10000, 100);
  expect(first).toMatch(/^sqlite-ha monitor {2}\/t-tty$/m);
  expect(first).toMatch(/watching {2}rev \d+ {2}keep-alive rtt/);
  expect(first).toMatch(new RegExp(`^tty\\.db {4}node-a {2}${aWrote.fence} `, 'm'));
  expect(paneVar('alternate_on')).toBe('1');
  expect(paneVar('cursor_flag')).toBe('0');

  const b = node('node-b');
  await waitFor('node-b queued on screen', () => /^tty\.db\s+node-a\s.*1\.node-b$/m.test(screen()), 10000, 100);
  a.child.kill('SIGTERM'); // node-a closes: a clean release, node-b proceeds
  const bWrote = await waitLine<{ ev: string; fence: number }>(b, (o) => o.ev === 'wrote', 'node-b to write');
  const after = await waitFor('the hand-over on screen', () => {
    const s = screen();
    return new RegExp(`^tty\\.db\\s+node-b\\s+${bWrote.fence}\\s`, 'm').test(s) && /handover/.test(s) ? s : undefined;
  }, 10000, 100);
  expect(after).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}  tty\\.db\\s+released\\s+node-a  fence ${aWrote.fence}`, 'm'));
  expect(after).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}  tty\\.db\\s+acquired\\s+node-b  fence ${bWrote.fence}  waited .*after node-a`, 'm'));
  expect(after).toMatch(new RegExp(`tty\\.db\\s+handover\\s+node-a -> node-b  fence ${bWrote.fence}  cause released  hand-over \\d+ ms`));
  expect(after).toMatch(/last commit txid 2 by node-b/);
  // Redrawn in place: the header appears once, on the first line.
  expect(after.split('\n')[0]).toBe('sqlite-ha monitor  /t-tty');
  expect(after.match(/sqlite-ha monitor/g)).toHaveLength(1);

  tmux('send-keys', '-t', 'mon', 'C-c');
  await waitFor('the monitor to exit', () => paneVar('pane_current_command') === 'bash', 5000, 100);
  await waitFor('the prompt back on the main screen', () => /READY\$\s*$/.test(screen()), 5000, 100);
  const end = screen();
  expect(paneVar('alternate_on')).toBe('0');
  expect(paneVar('cursor_flag')).toBe('1');
  expect(end).not.toContain('RECENT EVENTS');
  expect(end).not.toContain('LEASE TTL');
  expect(end).not.toContain('tty.db');
  // The terminal is back in cooked mode with echo.
  tmux('send-keys', '-t', 'mon', "clear; echo MODES=$(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo|isig)' | sort | tr '\\n' ,)", 'Enter');
  const modes = await waitFor('stty output', () => /^MODES=(\S*)$/m.exec(screen())?.[1], 5000, 100);
  expect(modes).toBe('echo,icanon,isig,');
});
