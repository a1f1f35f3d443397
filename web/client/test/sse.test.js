import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readEvents } from '../patchd.js';

function streamOf(chunks) {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
}

async function all(chunks) {
  const out = [];
  for await (const ev of readEvents(streamOf(chunks))) out.push(ev);
  return out;
}

test('readEvents parses events, comments and retry hints across chunk boundaries', async () => {
  const text = 'retry: 2000\n\nid: 1\nevent: snapshot\ndata: {"seq":1}\n\n: heartbeat\n\nid: 2\nevent: version\ndata: {"a":\ndata: 1}\n\n';
  const want = [
    { retry: 2000 },
    { id: '1', event: 'snapshot', data: '{"seq":1}' },
    { comment: 'heartbeat' },
    { id: '2', event: 'version', data: '{"a":\n1}' },
  ];
  assert.deepEqual(await all([text]), want);
  // Every split point, one byte at a time included.
  for (let i = 1; i < text.length; i++) assert.deepEqual(await all([text.slice(0, i), text.slice(i)]), want, `split at ${i}`);
  assert.deepEqual(await all([...text]), want);
});

test('readEvents: CRLF and CR line ends, default event name, id carried over', async () => {
  const got = await all(['data: a\r\n\r\nid: 7\rdata: b\r', '\rdata:c\n\n']);
  assert.deepEqual(got, [
    { id: '', event: 'message', data: 'a' },
    { id: '7', event: 'message', data: 'b' },
    { id: '7', event: 'message', data: 'c' },
  ]);
});

test('readEvents: a record without data dispatches nothing; a cut record is dropped', async () => {
  assert.deepEqual(await all(['event: x\n\nid: 3\ndata: partial']), []);
});

test('readEvents handles multi-byte characters split between chunks', async () => {
  const bytes = new TextEncoder().encode('data: "héllo ✓"\n\n');
  const s = new ReadableStream({
    start(c) {
      for (const b of bytes) c.enqueue(new Uint8Array([b]));
      c.close();
    },
  });
  const out = [];
  for await (const ev of readEvents(s)) out.push(ev);
  assert.deepEqual(out, [{ id: '', event: 'message', data: '"héllo ✓"' }]);
});
