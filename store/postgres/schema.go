package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the schema's SQL files, NNNN_name.sql, applied in order of
// their numbers, each once. Numbers need not be contiguous (lines of
// development take numbers apart), and a database records which ones it
// has: a file that sorts before one already applied is still applied, when
// it was not. A file, once released, is never edited: changes go in a new
// file.
//
//go:embed migrations/*.sql
var migrations embed.FS

// ErrSchemaTooNew means the database was migrated by a newer patchd than
// this one, which refuses to guess at a schema it does not know.
var ErrSchemaTooNew = errors.New("database schema is newer than this patchd")

// migrateLock is the key of the advisory lock that serializes migrations
// of one database ("patchd" in ASCII).
const migrateLock = 0x7061746368640001

// migration is one schema file.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in version order.
// Versions need not be contiguous: migrate applies each one the database
// lacks, whatever versions it has, so that migrations written side by side
// can be released in any order. A migration must therefore not depend on
// one with a smaller number that it does not name itself.
func loadMigrations() ([]migration, error) {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, f := range files {
		base := path.Base(f)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name must start with a version number", base)
		}
		b, err := migrations.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s: the same version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// SchemaVersion is the newest schema version this build migrates to.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies the migrations the database lacks, all in one
// transaction under an advisory lock: replicas starting at once wait for
// the first, then find nothing left to do. PostgreSQL's DDL is
// transactional, so a failed migration leaves the schema as it was. A
// database that has a version this build does not know is refused with
// ErrSchemaTooNew.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := noTimeouts(ctx, tx); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS patchd_schema (
			version integer PRIMARY KEY,
			name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT version FROM patchd_schema ORDER BY version`)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		have, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		applied := make(map[int]bool, len(have))
		known := make(map[int]bool, len(ms))
		for _, m := range ms {
			known[m.version] = true
		}
		for _, v := range have {
			if !known[int(v)] {
				return fmt.Errorf("migrate: %w: it has version %d, which this build does not know (newest known: %d)", ErrSchemaTooNew, v, SchemaVersion())
			}
			applied[int(v)] = true
		}
		for _, m := range ms {
			if applied[m.version] {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migrate: %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO patchd_schema (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("migrate: %s: %w", m.name, err)
			}
			log.Info("applied schema migration", "version", m.version, "name", m.name)
		}
		return nil
	})
}

// readDBTag returns the first bytes of the database's id (migration 0017),
// which its cursors carry.
func readDBTag(ctx context.Context, pool *pgxpool.Pool) ([]byte, error) {
	var id []byte
	err := pool.QueryRow(ctx, `SELECT id FROM patchd_meta`).Scan(&id)
	switch {
	case err != nil:
		return nil, err
	case len(id) < dbTagLen:
		return nil, fmt.Errorf("the database's id (patchd_meta) is %d bytes, fewer than %d", len(id), dbTagLen)
	}
	return id[:dbTagLen], nil
}
