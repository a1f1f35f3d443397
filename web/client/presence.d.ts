// Type declarations for presence.js: who else has a document open, and where.
import type { Doc, JSONValue, PatchdError } from './patchd.js';

/** What a session announces (PUT .../presence/{session}; at most 1 KiB). */
export interface PresenceFields {
  name?: string | null;
  color?: string | null;
  /** A JSON Pointer into the document (the field being edited), or null. */
  focus?: string | null;
  data?: JSONValue;
}

export interface PresenceOptions extends PresenceFields {
  /** ms between renewals (default 10000); keep it under the server's --presence-ttl. */
  renew?: number;
  /** The session id (16 to 64 of A-Z a-z 0-9 . _ ~ -); default: random. */
  session?: string;
}

/** A live session, as GET .../presence lists it. */
export interface PresenceSession {
  readonly session: string;
  /** The token's name (--tokens name=); null without tokens or a name. */
  readonly actor: string | null;
  /** As announced; null when left out. */
  readonly name: string | null;
  readonly color: string | null;
  readonly focus: string | null;
  readonly data: JSONValue;
  /** When it expires unless renewed (RFC 3339). */
  readonly expires: string;
}

/** One presence session on a document, and the others' sessions. */
export class Presence {
  readonly doc: Doc<any>;
  readonly session: string;
  /** The other live sessions of the document (this one left out). */
  readonly others: readonly PresenceSession[];
  /** The last failure to announce, if any. */
  readonly error?: PatchdError | Error;
  /** Calls listener(others) on every change; returns the unsubscribe function. */
  subscribe(listener: (others: readonly PresenceSession[]) => void): () => void;
  /** Changes fields and announces them now. */
  set(fields: PresenceFields): Promise<unknown>;
  /** Moves the focus; announced after 150 ms of quiet. */
  focus(pointer: string | null): void;
  /** Ends the session (DELETE, best effort, keepalive) and stops listening. */
  close(): void;
}

/** Announces a session on doc (which starts following) and renews it until close(). */
export function presence(doc: Doc<any>, options?: PresenceOptions): Presence;
