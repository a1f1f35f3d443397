package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/patchd/patchd/dump"
	"github.com/patchd/patchd/store"
	"github.com/prometheus/client_golang/prometheus"
)

func (m *Main) export(ctx context.Context, args []string) error {
	var db, out string
	var history bool
	var timeout time.Duration
	f := m.newFlagSet("export", func(w io.Writer) {
		fmt.Fprintln(w, "Usage: patchd export [flags]\n  Writes every document of a stopped database (or of a backup) as NDJSON, one document a line.")
	})
	f.add(stringValue{&db}, "db", "./patchd.db", "database to read (no server may be running on a file)")
	f.add(stringValue{&out}, "out", "-", "file to write, or - for standard output")
	f.add(boolValue{&history}, "history", "false", "add every retained version, and deleted documents whose history is retained")
	f.lockTimeout(&timeout)
	if err := f.parse(args); err != nil {
		return err
	}
	if out != "-" {
		release, err := checkOut(db, out)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer release()
	}
	st, err := openReadOnly(ctx, db, timeout)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer st.Close()
	src, ok := st.(store.Dumper)
	if !ok {
		return fmt.Errorf("export: %s cannot list its documents", store.Redact(db))
	}
	unit, metric := "documents", "patchd_documents"
	if history {
		unit, metric = "versions", "patchd_history_versions"
	}
	p := dump.NewProgress(m.Stderr, isTerminal(m.Stderr), gauge(st, metric), unit)
	var c dump.Counts
	write := func(w io.Writer) error {
		var err error
		c, err = dump.Export(ctx, src, w, dump.ExportOptions{History: history, Progress: p})
		return err
	}
	if out == "-" {
		err = write(m.Stdout)
	} else {
		err = writeFileAtomic(out, write)
	}
	p.Done()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(m.Stderr, "export: %d documents, %d deleted, %d versions, %d bytes\n", c.Documents, c.Deleted, c.Versions, c.Bytes)
	return nil
}

// gauge reads one unlabelled gauge of a store's metrics, 0 when it has
// none: the counts a progress bar expects, as /metrics reports them.
func gauge(st store.Store, name string) int64 {
	reg := prometheus.NewRegistry()
	if err := reg.Register(st.Collector()); err != nil {
		return 0
	}
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return int64(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return 0
}
