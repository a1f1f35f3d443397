package cli

import (
	"context"
	"io"
	"strings"
)

func noEnv(string) string { return "" }

// stdio are a command's standard streams.
type stdio struct {
	in  io.Reader
	out io.Writer
	err io.Writer
}

// dispatch runs the command of args as the binary does, without the exit.
func dispatch(ctx context.Context, args []string, getenv func(string) string, std stdio) error {
	if std.in == nil {
		std.in = strings.NewReader("")
	}
	m := &Main{Stdin: std.in, Stdout: std.out, Stderr: std.err, Getenv: getenv}
	return m.run(ctx, args)
}

// run serves (or runs the command of args) until ctx ends; ready, when not
// nil, receives the listening address.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready chan<- string) error {
	m := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: stderr, Getenv: getenv, Ready: ready}
	return m.run(ctx, args)
}

// parseFlags parses serve's flags as the command line gives them.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (serveConfig, error) {
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	m := &Main{Stderr: stderr, Getenv: getenv}
	return m.parseServe(args)
}
