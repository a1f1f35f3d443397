package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SetBeforeCommit installs a fault injected after a write's statements,
// before its COMMIT. Tests only; call before using the store.
func (s *Store) SetBeforeCommit(f func(ctx context.Context, tx pgx.Tx) error) {
	s.hooks.beforeCommit = f
}

// SetAfterCommit installs a fault injected after a successful COMMIT: an
// error it returns is handled as a lost acknowledgment. Tests only.
func (s *Store) SetAfterCommit(f func() error) { s.hooks.afterCommit = f }

// Pool returns the store's connection pool, for tests that reach into the
// database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }
