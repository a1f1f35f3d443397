// The core client stays small: minified with esbuild, gzipped at level 9
// (what `esbuild --bundle --minify client/patchd.js | gzip -9 | wc -c`
// measures), under 8.5 KB. The idb and react entries are measured too, and
// must not pull the core's size up: they are separate entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

async function size(entry, external = []) {
  const r = await build({
    entryPoints: [fileURLToPath(new URL(`../${entry}`, import.meta.url))],
    bundle: true,
    minify: true,
    format: 'esm',
    write: false,
    external,
    logLevel: 'silent',
  });
  return gzipSync(r.outputFiles[0].contents, { level: 9 }).length;
}

test('the core client is under 8.5 KB minified and gzipped', async (t) => {
  // share.js (one stream for all tabs) is imported by browsers only, when
  // the first document or collection is followed; undo.js on the first
  // undo() or revert(); restore.js by open() with a store; list.js by
  // list(); rebased.js with the first write. They are
  // measured on their own.
  const core = await size('patchd.js', ['./share.js', './undo.js', './restore.js', './list.js', './rebased.js']);
  const reb = await size('rebased.js', ['./json.js']);
  const restore = await size('restore.js');
  const share = await size('share.js');
  const undo = await size('undo.js', ['./json.js']);
  const watch = await size('watch.js', ['./json.js']);
  const pres = await size('presence.js');
  const idb = await size('idb.js');
  // react.js imports watch.js, measured on its own.
  const react = await size('react.js', ['react', './watch.js']);
  t.diagnostic(`patchd.js ${core} B, share.js ${share} B, undo.js ${undo} B, restore.js ${restore} B, rebased.js ${reb} B, watch.js ${watch} B, presence.js ${pres} B, idb.js ${idb} B, react.js ${react} B (min+gzip -9)`);
  assert.ok(core < 8704, `core is ${core} B`);
  assert.ok(idb < 2048, `idb.js is ${idb} B`);
  assert.ok(react < 2048, `react.js is ${react} B`);
  assert.ok(share < 1536, `share.js is ${share} B`); // with the stalled-leader and refused-union fallbacks
  assert.ok(undo < 2560, `undo.js is ${undo} B`);
  assert.ok(restore < 1024, `restore.js is ${restore} B`);
  assert.ok(reb < 1024, `rebased.js is ${reb} B`);
  assert.ok(watch < 2048, `watch.js is ${watch} B`);
  assert.ok(pres < 1536, `presence.js is ${pres} B`);
});
