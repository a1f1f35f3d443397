package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// presenceWait is how soon every replica's streams must hear of a change
// of presence (API.md): far sooner than the change feed's 15 s safety net,
// so only its notifications make it.
const presenceWait = time.Second

// TestPresenceAcrossReplicas: a session announced through replica A is in
// a stream of replica B within a second, and so is its end, by DELETE on
// A and by expiry, which no request announces.
func TestPresenceAcrossReplicas(t *testing.T) {
	db := pg.Database(t)
	rs := startReplicas(t, db, 2, "--presence-ttl", "2s")
	a, b := rs[0], rs[1]
	const doc = "/docs/forms/7"
	const s1, s2 = "0123456789abcdef-one", "0123456789abcdef-two"

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", b.URL+"/events",
		strings.NewReader(`{"docs":[{"c":"forms","id":"7","after":0}],"presence":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctJSON)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /events on B: %d", res.StatusCode)
	}
	type event struct {
		name string
		at   time.Time
		data struct {
			C, ID    string
			Sessions []struct {
				Session string
				Name    *string
				Expires time.Time
			}
		}
	}
	events := make(chan event, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.at = time.Now()
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
					t.Errorf("data %s: %v", line, err)
				}
			case line == "" && ev.name != "":
				events <- ev
				ev = event{}
			}
		}
	}()
	next := func(what string) event {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended before %s", what)
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", what)
		}
		panic("unreachable")
	}
	if ev := next("ready"); ev.name != "ready" {
		t.Fatalf("first event %s, want ready", ev.name)
	}
	presence := func(what string, since time.Time, ids ...string) event {
		t.Helper()
		ev := next(what)
		var got []string
		for _, s := range ev.data.Sessions {
			got = append(got, s.Session)
		}
		if ev.name != "presence" || ev.data.C != "forms" || ev.data.ID != "7" || strings.Join(got, ",") != strings.Join(ids, ",") {
			t.Fatalf("%s: event %s %+v, want presence with %v", what, ev.name, ev.data, ids)
		}
		if d := ev.at.Sub(since); d > presenceWait {
			t.Fatalf("%s: heard on B %v after it happened", what, d)
		}
		t.Logf("%s: heard on B after %v", what, ev.at.Sub(since))
		return ev
	}

	// Two sessions announced on A.
	r := do(t, a.URL, "PUT", doc+"/presence/"+s1, `{"name":"Ann"}`, "Content-Type", ctJSON)
	want(t, r, http.StatusOK)
	presence("announce", time.Now(), s1)
	r = do(t, a.URL, "PUT", doc+"/presence/"+s2, `{"name":"Bob"}`, "Content-Type", ctJSON)
	want(t, r, http.StatusOK)
	ev := presence("second announce", time.Now(), s1, s2)
	if n := ev.data.Sessions[1].Name; n == nil || *n != "Bob" {
		t.Fatalf("second session %+v", ev.data.Sessions[1])
	}
	var bob struct{ Expires time.Time }
	if err := json.Unmarshal(r.body, &bob); err != nil {
		t.Fatal(err)
	}

	// Ended on A.
	want(t, do(t, a.URL, "DELETE", doc+"/presence/"+s1, ""), http.StatusNoContent)
	presence("end", time.Now(), s2)
	if r := do(t, b.URL, "GET", doc+"/presence", ""); !strings.Contains(string(r.body), s2) || strings.Contains(string(r.body), s1) {
		t.Fatalf("GET on B: %s", r.body)
	}

	// Not renewed: it expires, and B's stream is told within a second of
	// the expiry, though no request says so.
	if ev := presence("expiry", bob.Expires); ev.at.Before(bob.Expires.Add(-100 * time.Millisecond)) {
		t.Fatalf("told of the expiry at %v, before it (%v)", ev.at, bob.Expires)
	}
	if r := do(t, b.URL, "GET", doc+"/presence", ""); string(r.body) != `{"sessions":[]}` {
		t.Fatalf("GET on B after the expiry: %s", r.body)
	}
	// Presence is not a version.
	want(t, do(t, b.URL, "GET", doc+"/history", ""), http.StatusNotFound)
}
