// Writes dist/index.mjs (and dist/kysely/index.mjs) so `import { open } from 'sqlite-ha'` works next
// to require(). Each ESM entry re-exports its CommonJS build: one implementation, two module systems.
const fs = require('fs');
const path = require('path');
const dist = path.join(__dirname, '..', 'dist');

function writeEntry(dir) {
  const cjs = require(path.join(dir, 'index.js'));
  const names = Object.keys(cjs).filter((n) => n !== 'default' && n !== '__esModule');
  const body = [
    "import cjs from './index.js';",
    ...names.map((n) => `export const ${n} = cjs.${n};`),
    'export default cjs;',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'index.mjs'), body);
}

writeEntry(dist);
// The Kysely dialect needs kysely (an optional peer dependency) only when it is imported.
if (fs.existsSync(path.join(dist, 'kysely', 'index.js'))) writeEntry(path.join(dist, 'kysely'));
