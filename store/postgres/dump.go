package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/patchd/patchd/store"
)

// dumpBatch is how many documents Dump reads per query.
const dumpBatch = 256

// Dump calls fn for every document in collection then id byte order, from
// one REPEATABLE READ transaction, so that the records form a consistent
// snapshot (see store.Dumper). Documents are read dumpBatch at a time, and
// with history their versions with them, so memory stays bounded.
func (s *Store) Dump(ctx context.Context, withHistory bool, fn func(*store.Record) error) error {
	if err := s.gate.Enter(ctx, "dump"); err != nil {
		return err
	}
	defer s.gate.Leave()
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := noTimeouts(ctx, tx); err != nil {
			return err
		}
		var afterC, afterID string
		for {
			recs, err := dumpDocuments(ctx, tx, afterC, afterID, withHistory)
			if err != nil {
				return err
			}
			if withHistory {
				if err := dumpVersions(ctx, tx, recs); err != nil {
					return err
				}
			}
			for _, r := range recs {
				if err := fn(r); err != nil {
					return err
				}
			}
			if len(recs) < dumpBatch {
				return nil
			}
			afterC, afterID = recs[len(recs)-1].Collection, recs[len(recs)-1].ID
		}
	})
	if err != nil {
		return fmt.Errorf("store: dump: %w", s.fail(ctx, err))
	}
	return nil
}

// dumpDocuments reads the next batch of documents after (afterC, afterID):
// the current ones, and with history the deleted ones too.
func dumpDocuments(ctx context.Context, tx pgx.Tx, afterC, afterID string, withHistory bool) ([]*store.Record, error) {
	rows, err := tx.Query(ctx,
		`SELECT collection, id, seq, etag, body, deleted, updated_ns FROM documents
		 WHERE (collection, id) > ($1, $2) AND seq > 0 AND ($3 OR NOT deleted)
		 ORDER BY collection, id LIMIT $4`,
		afterC, afterID, withHistory, dumpBatch)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []*store.Record
	for rows.Next() {
		var (
			r   store.Record
			row docRow
		)
		if err := rows.Scan(&r.Collection, &r.ID, &row.seq, &row.etag, &row.body, &row.deleted, &row.updatedNs); err != nil {
			return nil, err
		}
		r.Doc = row.document(r.Collection, r.ID)
		recs = append(recs, &r)
	}
	return recs, rows.Err()
}

// dumpVersions fills the History of every record.
func dumpVersions(ctx context.Context, tx pgx.Tx, recs []*store.Record) error {
	if len(recs) == 0 {
		return nil
	}
	cs, ids := make([]string, len(recs)), make([]string, len(recs))
	byKey := make(map[[2]string]*store.Record, len(recs))
	for i, r := range recs {
		cs[i], ids[i] = r.Collection, r.ID
		byKey[[2]string{r.Collection, r.ID}] = r
	}
	rows, err := tx.Query(ctx,
		`SELECT v.collection, v.id, v.seq, v.etag, v.at_ns, v.kind, v.ops, v.rebased_from, v.actor, v.request_id, v.reverts
		 FROM document_versions v
		 JOIN unnest($1::text[], $2::text[]) AS k(c, i)
		   ON v.collection = k.c COLLATE "C" AND v.id = k.i COLLATE "C"
		 ORDER BY v.collection, v.id, v.seq`, cs, ids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			c, id            string
			v                store.Version
			seq, ns, reverts int64
			etag             []byte
		)
		if err := rows.Scan(&c, &id, &seq, &etag, &ns, &v.Kind, &v.Ops, &v.RebasedFrom, &v.Actor, &v.RequestID, &reverts); err != nil {
			return err
		}
		v.Seq, v.ETag, v.At = uint64(seq), etagString(etag), time.Unix(0, ns).UTC() // #nosec G115 -- a seq from the database is non-negative
		v.Reverts = uint64(reverts)                                                 // #nosec G115 -- as seq
		if len(v.Ops) == 0 {
			v.Ops = nil
		}
		if r := byKey[[2]string{c, id}]; r != nil {
			r.History = append(r.History, v)
		}
	}
	return rows.Err()
}

// Load writes records as they are (see store.Loader): documents the
// database holds already get store.ErrExists, the others are written with
// their histories in one transaction, with COPY.
func (s *Store) Load(ctx context.Context, recs []*store.Record) ([]error, error) {
	errs, err := s.gate.EnterLoad(ctx, recs)
	if err != nil {
		return nil, err
	}
	defer s.gate.Leave()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := noTimeouts(ctx, tx); err != nil {
			return err
		}
		valid := make([]*store.Record, 0, len(recs))
		for i, r := range recs {
			if errs[i] == nil {
				valid = append(valid, r)
			}
		}
		have, err := existing(ctx, tx, valid)
		if err != nil {
			return err
		}
		var docs, versions [][]any
		for i, r := range recs {
			if errs[i] != nil {
				continue
			}
			if have[[2]string{r.Collection, r.ID}] {
				errs[i] = fmt.Errorf("%s/%s: %w", r.Collection, r.ID, store.ErrExists)
				continue
			}
			last := r.History[len(r.History)-1]
			row := []any{r.Collection, r.ID, int64(last.Seq), []byte{}, []byte{}, true, last.At.UnixNano()} // #nosec G115 -- CheckRecord bounds every seq by MaxInt64
			if d := r.Doc; d != nil {
				etag, _ := etagBytes(d.ETag)
				row = []any{r.Collection, r.ID, int64(d.Seq), etag, d.Body, false, d.UpdatedAt.UnixNano()} // #nosec G115 -- as above
			}
			docs = append(docs, row)
			for _, v := range r.History {
				vetag, _ := etagBytes(v.ETag)
				versions = append(versions, []any{r.Collection, r.ID, int64(v.Seq), nonNil(vetag), // #nosec G115 -- as above
					v.Kind, nonNil(v.Ops), v.RebasedFrom, []byte{}, v.At.UnixNano(), v.Actor, v.RequestID, int64(v.Reverts)}) // #nosec G115 -- as above
			}
		}
		if len(docs) == 0 {
			return nil
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"documents"},
			[]string{"collection", "id", "seq", "etag", "body", "deleted", "updated_ns"},
			pgx.CopyFromRows(docs)); err != nil {
			return err
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"document_versions"},
			[]string{"collection", "id", "seq", "etag", "kind", "ops", "rebased_from", "token", "at_ns", "actor", "request_id", "reverts"},
			pgx.CopyFromRows(versions))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: load: %w", s.fail(ctx, err))
	}
	return errs, nil
}

// existing reports which of the records' documents the database holds a
// row of (current, deleted, or placeholder being written).
func existing(ctx context.Context, tx pgx.Tx, recs []*store.Record) (map[[2]string]bool, error) {
	cs, ids := make([]string, len(recs)), make([]string, len(recs))
	for i, r := range recs {
		cs[i], ids[i] = r.Collection, r.ID
	}
	rows, err := tx.Query(ctx,
		`SELECT d.collection, d.id FROM documents d JOIN unnest($1::text[], $2::text[]) AS k(c, i)
		   ON d.collection = k.c COLLATE "C" AND d.id = k.i COLLATE "C"`, cs, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := make(map[[2]string]bool)
	for rows.Next() {
		var c, id string
		if err := rows.Scan(&c, &id); err != nil {
			return nil, err
		}
		have[[2]string{c, id}] = true
	}
	return have, rows.Err()
}
