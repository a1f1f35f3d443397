// Package cli is the patchd command: it parses the command line once, runs
// the command it names (serve, backup, export, import, migrate, check, version,
// help), and closes what it opened. The root main package only
// calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	// The storage backends, each registered for its scheme (store.Open).
	_ "github.com/patchd/patchd/store/bolt"
	_ "github.com/patchd/patchd/store/postgres"
)

// Main runs patchd's commands with its standard streams and environment.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the PATCHD_* variables that give flags their defaults.
	Getenv func(string) string
	// Ready, when not nil, receives the server's listening address once it
	// accepts connections.
	Ready chan<- string
}

// NewMain returns a Main on the process's standard streams and
// environment.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2 // a mistake on the command line
)

// Run runs the command args name until it ends or ctx is done, prints any
// error to Stderr, and returns the process's exit status: 0, 1 for a
// failure, 2 for a mistake on the command line.
func (m *Main) Run(ctx context.Context, args []string) int {
	err := m.run(ctx, args)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	fmt.Fprintln(m.Stderr, "patchd:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// command is one of patchd's commands.
type command struct {
	name    string
	args    string // the synopsis after the name
	summary string
	// run runs the command with the arguments after its name.
	run func(m *Main, ctx context.Context, args []string) error
}

// commands lists patchd's commands in the order help shows them.
func commands() []command {
	return []command{
		{"serve", "[flags]", "run the server (the default command)", (*Main).serve},
		{"backup", "[flags]", "copy a database consistently (--db FILE, or --url of a running server) to --out FILE", (*Main).backup},
		{"export", "[flags]", "write every document, optionally with history, as NDJSON", (*Main).export},
		{"import", "[flags]", "load NDJSON written by export, checking every line", (*Main).importCmd},
		{"migrate", "[flags]", "copy every document and its history into another database (--from --to), resumable, verified", (*Main).migrate},
		{"check", "[flags]", "verify a database (--db FILE): its storage, every document's ETag, every history", (*Main).check},
		{"version", "", "print the version", (*Main).version},
		{"help", "[COMMAND]", "describe patchd, or a command and its flags", (*Main).help},
	}
}

// lookup returns the command of a name.
func lookup(name string) (command, bool) {
	i := slices.IndexFunc(commands(), func(c command) bool { return c.name == name })
	if i < 0 {
		return command{}, false
	}
	return commands()[i], true
}

// run dispatches args to their command: serve when args start with a flag
// or are empty.
func (m *Main) run(ctx context.Context, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		switch {
		case len(args) == 1 && (args[0] == "--version" || args[0] == "-version"):
			return m.version(ctx, nil)
		}
		return m.serve(ctx, args)
	}
	c, ok := lookup(args[0])
	if !ok {
		return usageError{fmt.Errorf("unknown command %q; the commands are %s (patchd help)", args[0], names())}
	}
	return c.run(m, ctx, args[1:])
}

// names lists the commands' names.
func names() string {
	var out []string
	for _, c := range commands() {
		out = append(out, c.name)
	}
	return strings.Join(out, ", ")
}
