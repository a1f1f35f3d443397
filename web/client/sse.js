// A Server-Sent Events parser over a fetch response body, as the HTML
// standard's event stream interpretation describes. fetch (unlike
// EventSource) can send headers such as Authorization and Last-Event-ID, and
// runs in Node.js, which has no EventSource.

/**
 * Reads events from a ReadableStream of bytes. Yields {id, event, data}
 * for each dispatched event (id is the last event id seen, event defaults to
 * "message"), {retry} for each reconnection time hint, and {comment} for
 * each comment line, which lets a caller notice heartbeats. Ends when the
 * stream ends; stopping early cancels the body.
 */
export async function* readEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let id = '';
  let event = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buf);
        if (!m) break;
        // A lone \r at the end of the buffer may be the start of \r\n.
        if (m[0] === '\r' && m.index === buf.length - 1) break;
        const line = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        if (line === '') {
          if (data.length > 0) yield { id, event: event || 'message', data: data.join('\n') };
          event = '';
          data = [];
          continue;
        }
        if (line[0] === ':') {
          yield { comment: line.slice(1).trimStart() };
          continue;
        }
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? '' : line.slice(colon + 1);
        if (v[0] === ' ') v = v.slice(1);
        switch (field) {
          case 'id':
            if (!v.includes('\0')) id = v;
            break;
          case 'event':
            event = v;
            break;
          case 'data':
            data.push(v);
            break;
          case 'retry':
            if (/^[0-9]+$/.test(v)) yield { retry: Number(v) };
            break;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
