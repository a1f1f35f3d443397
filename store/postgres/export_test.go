package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// SetBeforeCommit installs a fault injected after a write's statements,
// before its COMMIT. Tests only; call before using the store.
func (s *Store) SetBeforeCommit(f func(ctx context.Context, tx pgx.Tx) error) {
	s.hooks.beforeCommit = f
}

// SetAfterCommit installs a fault injected after a successful COMMIT: an
// error it returns is handled as a lost acknowledgment. Tests only.
func (s *Store) SetAfterCommit(f func() error) { s.hooks.afterCommit = f }
