package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/patchd/patchd/store"
)

// SetBeforeCommit installs a fault injected after a write's statements,
// before its COMMIT. Tests only; call before using the store.
func (s *Store) SetBeforeCommit(f func(ctx context.Context, tx pgx.Tx) error) {
	s.hooks.beforeCommit = f
}

// SetBeforeLock installs a hook run at the start of each write's
// transaction, before it locks the document's row. Tests only.
func (s *Store) SetBeforeLock(f func(ctx context.Context, tx pgx.Tx, collection, id string) error) {
	s.hooks.beforeLock = f
}

// SetAfterCommit installs a fault injected after a successful COMMIT: an
// error it returns is handled as a lost acknowledgment. Tests only.
func (s *Store) SetAfterCommit(f func() error) { s.hooks.afterCommit = f }

// Pool returns the store's connection pool, for tests that reach into the
// database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// SetAfterLock makes every write call f after it locks each document's
// row. Tests only; call before using the store.
func (s *Store) SetAfterLock(f func(k store.Key)) { s.hooks.afterLock = f }

// SetOnRetry makes every write call f with the error of each failed
// attempt. Tests only; call before using the store.
func (s *Store) SetOnRetry(f func(err error)) { s.hooks.onRetry = f }

// SchemaVersions lists the versions of the embedded migrations, in order.
func SchemaVersions() []int {
	ms, err := loadMigrations()
	if err != nil {
		panic(err)
	}
	var vs []int
	for _, m := range ms {
		vs = append(vs, m.version)
	}
	return vs
}

// SetListenHealthy sets how long a change feed connection must stay up
// for its reconnection backoff to start afresh.
func (s *Store) SetListenHealthy(d time.Duration) { s.hooks.listenHealthy = d }
