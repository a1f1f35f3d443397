package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

func (m *Main) version(_ context.Context, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("version takes no arguments, not %q", args[0])}
	}
	fmt.Fprintln(m.Stdout, versionLine())
	return nil
}

// version returns the module version the binary was built from, else the
// VCS revision Go recorded when it was built from a work tree, else
// "devel" with a word on why there is nothing more to say.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "devel-" + rev
}

// versionLine is what the version command prints.
func versionLine() string {
	line := fmt.Sprintf("patchd %s (%s %s/%s)", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if version() == "devel" {
		line += "\nbuilt without version control information (go run, or -buildvcs=false); go build in a git work tree records the revision"
	}
	return line
}
