// Client.list(): a page of a collection, loaded on the first call.

// list lists a page of collection with client c (see Client.list).
export async function list(c, collection, { signal, where, ...q } = {}) {
  if (where) q.where = JSON.stringify(where);
  for (const k in q) if (q[k] == null) delete q[k];
  const query = new URLSearchParams(q).toString();
  const res = await c._request(c._url(collection, undefined, query && '?' + query), { headers: { Accept: 'application/json' }, cache: 'no-store' }, { signal });
  if (!res.ok) throw await c._problem(res);
  return res.json();
}
