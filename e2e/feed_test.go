package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFeedAcrossReplicas: a change feed subscriber on replica A sees the
// writes made through B and C, in seq order, promptly: well before the
// stream's 15 s heartbeat, so through the store's commit notifications
// (LISTEN/NOTIFY), not the heartbeat's safety-net re-read.
func TestFeedAcrossReplicas(t *testing.T) {
	db := pg.Database(t)
	rs := startReplicas(t, db, 3)
	const path = "/docs/feed/shared"
	r := do(t, rs[0].URL, "PUT", path, `{"n":0}`, "Content-Type", ctJSON)
	want(t, r, http.StatusCreated)
	etag := r.header.Get("ETag")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", rs[0].URL+path+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan [2]string, 64) // event name, id
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name, id string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event:"):
				name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "id:"):
				id = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
			case line == "" && name != "":
				events <- [2]string{name, id}
				name, id = "", ""
			}
		}
	}()
	first := <-events
	if first[0] != "snapshot" {
		t.Fatalf("first event %v, want snapshot", first)
	}

	// Writes through B and C only.
	const writes = 6
	for i := 1; i <= writes; i++ {
		r := do(t, rs[1+i%2].URL, "PATCH", path, fmt.Sprintf(`{"n":%d}`, i), "Content-Type", ctMerge, "If-Match", etag)
		want(t, r, http.StatusOK)
		etag = r.header.Get("ETag")
	}
	var seqs []int
	for len(seqs) < writes {
		ev, ok := <-events
		if !ok {
			t.Fatalf("stream ended after seqs %v: %v", seqs, ctx.Err())
		}
		if ev[0] != "version" {
			continue
		}
		seq, err := strconv.Atoi(ev[1])
		if err != nil {
			t.Fatalf("event id %q", ev[1])
		}
		seqs = append(seqs, seq)
	}
	for i, s := range seqs {
		if s != i+2 { // the create is seq 1, in the snapshot
			t.Fatalf("seqs %v, want 2..%d in order", seqs, writes+1)
		}
	}
	var doc struct{ N int }
	if err := json.Unmarshal(do(t, rs[0].URL, "GET", path, "").body, &doc); err != nil || doc.N != writes {
		t.Fatalf("document on A: %+v %v", doc, err)
	}
}
