package cli

import (
	"context"
	"flag"
	"fmt"
)

// help describes patchd (its commands and serve's flags), or one command.
func (m *Main) help(ctx context.Context, args []string) error {
	switch {
	case len(args) == 0, args[0] == "serve":
		var cfg serveConfig
		m.serveFlags(&cfg).help()
		return flag.ErrHelp
	case len(args) > 1:
		return usageError{fmt.Errorf("help takes one command, not %q", args)}
	}
	c, ok := lookup(args[0])
	if !ok {
		return usageError{fmt.Errorf("help: unknown command %q; the commands are %s", args[0], names())}
	}
	switch c.name {
	case "version":
		fmt.Fprintln(m.Stdout, "Usage: patchd version\n  Prints the version patchd was built as (a release, or the VCS revision of a build from a work tree), with Go's version and the platform. patchd --version does the same.")
		return flag.ErrHelp
	case "help":
		fmt.Fprintln(m.Stdout, "Usage: patchd help [COMMAND]\n  Describes patchd and its commands with serve's flags, or one command with its flags. The commands are "+names()+".")
		return flag.ErrHelp
	}
	return c.run(m, ctx, []string{"--help"})
}
