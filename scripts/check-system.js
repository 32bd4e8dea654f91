// npm test's first step: stop at once, in one line, when a Debian package the tests need is missing.
const { missing } = require('./system');

const absent = missing();
if (absent.length) {
  console.error(`npm test: missing Debian packages: ${absent.join(' ')}. Install them with: npm run setup`);
  process.exit(1);
}
