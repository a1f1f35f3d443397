// The example at the top of web/client/README.md, verbatim between the
// markers (readme.test.js checks that), compiled by `npm run test:types`
// under strict TypeScript. render and showPrompt are the app's own.
declare function render(value: unknown): void;
declare function showPrompt(paths: string[], theirs: unknown, mine: unknown): void;

// --- README example ---
import { Client, ConflictError, diff } from '@patchd/client';

const client = new Client({ baseURL: 'http://127.0.0.1:8080' });
const doc = await client.open('forms', '42', { follow: true });
doc.subscribe((ev) => {
  if (ev.type === 'change') render(doc.value);
});

const base = doc.version(); // when the user starts editing a field
// ... later, when the field is done:
try {
  const { etag, rebasedFrom } = await doc.patch(diff(doc.value, { ...doc.value, phone: '555-0142' }), { base });
  console.log(etag, rebasedFrom);
} catch (err) {
  if (err instanceof ConflictError) showPrompt(err.paths, err.current?.value, err.mine);
}
// --- end ---
