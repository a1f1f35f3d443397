// The demo's pages on a server started with --tokens: a page the server
// refuses (401) asks for a token, keeps it for the tab (sessionStorage,
// gone when the tab closes) and sends it as Authorization: Bearer with
// every request, the change stream's included.
const KEY = 'patchd-demo-token';

/** The headers of every request: the tab's token, if one was given. */
export function authHeaders() {
  const token = sessionStorage.getItem(KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * Shows, in place of el's content, why the server refused the page and a
 * field for a token; a token given reloads the page with it, or, with
 * then, is used from the next request on and then is called (a write
 * refused to a read-only token is sent again without losing the page).
 * status is the refusal's (401: none or not valid; 403: not allowed here).
 */
export function askToken(el, status, message, { then } = {}) {
  const had = sessionStorage.getItem(KEY) !== null;
  const form = document.createElement('form');
  form.className = 'token';
  const p = document.createElement('p');
  p.textContent =
    status === 403
      ? `This token may not do this here (${message}). Sign in with another one.`
      : had
        ? `The server did not accept this token (${message}). Sign in with another one.`
        : 'This server needs a token (it was started with --tokens). Sign in with one of its tokens.';
  const label = document.createElement('label');
  label.htmlFor = 'token';
  label.textContent = 'Token';
  const input = document.createElement('input');
  input.id = 'token';
  input.type = 'password';
  input.autocomplete = 'off';
  input.required = true;
  const button = document.createElement('button');
  button.type = 'submit';
  button.textContent = 'Sign in';
  form.append(p, label, input, button);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    sessionStorage.setItem(KEY, token);
    if (!then) {
      location.reload();
      return;
    }
    el.replaceChildren();
    then();
  });
  el.replaceChildren(form);
  // Not while someone is typing in the form: the next keys would go
  // into the token (and Enter would sign in with them).
  if (!document.activeElement?.matches?.('input, textarea, select, [contenteditable]')) input.focus();
}
