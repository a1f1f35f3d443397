// Command patchd serves JSON documents over HTTP with strong content-hash
// ETags, JSON Patch and Merge Patch, and the rebase of stale edits. It stores
// them in an embedded bbolt file, or in PostgreSQL for several replicas.
//
//	patchd [serve] [flags]
//	patchd backup|export|import|migrate [flags]
//	patchd version
//	patchd help [COMMAND]
//
// Every flag has a PATCHD_<NAME> environment variable; see patchd help.
// The commands live in package internal/cli; this only runs them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchd/patchd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.NewMain().Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
