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
  if (p.glob) return fs.readdirSync(path.dirname(p.glob)).some((f) => new RegExp(`^${path.basename(p.glob).replace(/\*/g, '.*')}$`).test(f));
  return false;
}

module.exports = { packages, missing: () => packages.filter((p) => !present(p)).map((p) => p.package) };
