// The published package holds every module its modules import: a module
// left out of package.json's "files" is missing from npm installs, and a
// dynamic import of it fails there (patchd.js goes on without some checks
// when one does, so nothing else would show it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));

test('package.json "files" lists every module a listed module imports, and every export', () => {
  const files = new Set(pkg.files);
  const wanted = new Set();
  for (const name of pkg.files.filter((f) => f.endsWith('.js'))) {
    const src = readFileSync(join(dir, name), 'utf8');
    for (const m of src.matchAll(/(?:import\s*\(\s*|from\s+|import\s+)['"]\.\/([^'"]+)['"]/g)) wanted.add(m[1]);
  }
  for (const entry of Object.values(pkg.exports)) {
    for (const target of typeof entry === 'string' ? [entry] : Object.values(entry)) wanted.add(target.replace(/^\.\//, ''));
  }
  const missing = [...wanted].filter((f) => !files.has(f) && f !== 'package.json'); // npm always ships package.json
  assert.deepEqual(missing, [], `imported or exported but not in "files": ${missing.join(', ')}`);
  // And every module of the directory is either listed or deliberately not shipped.
  const unlisted = readdirSync(dir).filter((f) => f.endsWith('.js') && !files.has(f));
  assert.deepEqual(unlisted, [], `modules not in "files": ${unlisted.join(', ')}`);
});
