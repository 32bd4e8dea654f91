// npm run setup: installs the Debian packages the tests need (as root, or through sudo).
const { spawnSync } = require('child_process');
const { missing } = require('./system');

const absent = missing();
if (!absent.length) {
  console.log('setup: every Debian package the tests need is installed');
  process.exit(0);
}
const root = typeof process.getuid === 'function' && process.getuid() === 0;
const sudo = root ? [] : ['sudo'];
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
function run(argv) {
  console.log(`setup: ${argv.join(' ')}`);
  const r = spawnSync(argv[0], argv.slice(1), { stdio: 'inherit', env });
  if (r.error || r.status !== 0) {
    console.error(`setup: '${argv.join(' ')}' failed${r.error ? `: ${r.error.message}` : ` (exit ${r.status})`}`);
    process.exit(1);
  }
}
run([...sudo, 'apt-get', 'update', '-qq']);
run([...sudo, 'apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...absent]);
// Debian starts the packaged etcd as a service on 2379; the tests start their own on free ports.
spawnSync('sh', ['-c', `${sudo.join(' ')} systemctl stop etcd 2>/dev/null || true`], { stdio: 'ignore' });
const still = missing();
if (still.length) {
  console.error(`setup: still missing after apt-get: ${still.join(' ')}`);
  process.exit(1);
}
console.log(`setup: installed ${absent.join(' ')}`);
