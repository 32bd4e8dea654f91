// Which of the Debian packages in system-packages.json are missing on this machine.
const fs = require('fs');
const path = require('path');

const { packages } = JSON.parse(fs.readFileSync(path.join(__dirname, 'system-packages.json'), 'utf8'));

function onPath(cmd) {
  return (process.env.PATH || '').split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir, cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function present(p) {
  if (p.command) return onPath(p.command);
  if (p.path) return fs.existsSync(p.path);
  if (p.glob) return globMatches(p.glob);
  return false;
}

// A glob's directory may not exist yet on a fresh machine (ganesha's plugin directory comes with
// its package): that is "missing", not a crash.
function globMatches(glob) {
  let names;
  try {
    names = fs.readdirSync(path.dirname(glob));
  } catch (err) {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return false;
    throw err;
  }
  const pattern = new RegExp(`^${path.basename(glob).replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
  return names.some((f) => pattern.test(f));
}

module.exports = { packages, globMatches, missing: () => packages.filter((p) => !present(p)).map((p) => p.package) };
