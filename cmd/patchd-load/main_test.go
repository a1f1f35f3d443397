package main

import (
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	for _, args := range [][]string{{"-scenarios", "6"}, {"-refs", "patchd"}, {"-refs", "nope"}, {"-retry", "x"}, {"-clients", "0"}, {"stray"}} {
		if _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	o, err := parseOptions([]string{"-scenarios", "2,3", "-refs", "none"}, io.Discard)
	if err != nil || !o.scenarios[2] || !o.scenarios[3] || o.scenarios[1] || len(o.refs) != 0 {
		t.Fatalf("%+v %v", o, err)
	}
}

// TestSmoke runs every scenario and reference briefly, in process, and
// checks that every edit was read back and the summary names every run.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of load")
	}
	var out strings.Builder
	err := run(t.Context(), []string{"-inproc", "-duration", "300ms", "-samples", "1", "-clients", "4",
		"-docs", "50", "-read-docs", "20", "-big-docs", "2", "-big-clients", "2",
		"-refs", "echo,naive,naive-batch,naive-nosync"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		`1 fresh\s+patchd`, `1 fresh\s+echo`, `1 fresh\s+naive `, `1 fresh\s+naive-batch`, `1 fresh\s+naive-nosync`,
		`2 rebase\s+patchd`, `3 strict\s+patchd`, `4 304\s+patchd`, `4 304\s+echo`, `5 1MB\s+patchd`,
		`scenario 2 412s\s+0`, `scenario 2 lost edits\s+0`,
		`scenario 1 / naive-batch throughput\s+[0-9.]+\s+>= 1.50`, `scenario 1 / naive-nosync throughput \(not durable\)\s+[0-9.]+\s+>= 0.90`,
		`scenario 1 p99\s+[0-9.]+ms\s+< 10ms`, `scenario 2 / scenario 1 throughput\s+[0-9.]+\s+>= 1.00`,
		`scenario 4 / no-op Echo throughput\s+[0-9.]+\s+>= 0.85`,
	} {
		if !regexp.MustCompile(want).MatchString(s) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, ", 0 lost"); n != 10 {
		t.Errorf("%d runs read back with nothing lost, want 10:\n%s", n, s)
	}
}

// TestSmokeBinary drives the real patchd binary (-patchd), which logs a
// JSON line per request on the pipe the load generator reads: it must find
// the server's address there and finish with every edit read back.
func TestSmokeBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds patchd")
	}
	bin := filepath.Join(t.TempDir(), "patchd")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/patchd/patchd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var out strings.Builder
	err := run(t.Context(), []string{"-patchd", bin, "-scenarios", "1,4", "-refs", "none", "-duration", "300ms",
		"-samples", "1", "-clients", "4", "-docs", "50", "-read-docs", "20"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), ", 0 lost"); n != 2 {
		t.Errorf("%d runs read back with nothing lost, want 2:\n%s", n, out.String())
	}
	// The server is a child process: its CPU time per request is known.
	for _, want := range []string{`(?m)^\s*1 fresh\s+patchd(\s+\S+){7}\s+[0-9]+us\s`, `(?m)^\s*4 304\s+patchd(\s+\S+){7}\s+[0-9]+us\s`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("summary lacks the server's CPU per request (%q):\n%s", want, out.String())
		}
	}
}
