package client_test

import (
	"slices"
	"testing"

	"github.com/patchd/patchd/client"
)

// sessionNames returns the sessions' names.
func sessionNames(ss []client.PresenceSession) []string {
	var out []string
	for _, s := range ss {
		if s.Name != nil {
			out = append(out, *s.Name)
		}
	}
	return out
}

func TestWatchPresence(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	ann, bob := "Ann", "Bob"
	const annSession, bobSession = "session-of-ann-0001", "session-of-bob-0001"
	if _, err := cl.SetPresence(ctx, "forms", "42", annSession, client.PresenceState{Name: &ann}); err != nil {
		t.Fatal(err)
	}
	ch := cl.Watch(ctx, client.Subscriptions{
		Docs:     []client.DocSubscription{{Collection: "forms", ID: "42"}, {Collection: "forms", ID: "43"}},
		Ready:    true,
		Presence: true,
	})
	// The snapshots, forms/42's sessions (forms/43 has none), then ready.
	var got []client.Event
	for {
		ev := next(t, ch)
		got = append(got, ev)
		if ev.Type == client.EventReady {
			break
		}
	}
	var presence []client.Event
	for _, ev := range got {
		if ev.Type == client.EventPresence {
			presence = append(presence, ev)
		}
	}
	if len(got) != 4 || len(presence) != 1 || presence[0].Collection != "forms" || presence[0].ID != "42" ||
		!slices.Equal(sessionNames(presence[0].Sessions), []string{"Ann"}) || presence[0].Sessions[0].Session != annSession {
		t.Fatalf("events %+v, want two snapshots, Ann's presence on forms/42, ready", got)
	}

	// A second session, then both end: the list changes each time (events
	// may come together).
	if _, err := cl.SetPresence(ctx, "forms", "42", bobSession, client.PresenceState{Name: &bob}); err != nil {
		t.Fatal(err)
	}
	waitSessions := func(want []string) {
		t.Helper()
		for {
			ev := next(t, ch)
			if ev.Type != client.EventPresence || ev.Collection != "forms" || ev.ID != "42" {
				t.Fatalf("event %+v, want forms/42's presence", ev)
			}
			if slices.Equal(sessionNames(ev.Sessions), want) {
				return
			}
		}
	}
	waitSessions([]string{"Ann", "Bob"})
	for _, s := range []string{annSession, bobSession} {
		if err := cl.EndPresence(ctx, "forms", "42", s); err != nil {
			t.Fatal(err)
		}
	}
	waitSessions(nil)
}

// TestWatchPresenceAfterRestart: a restart ends every session (presence
// is not stored); the next stream's start says the list is empty, rather
// than leave the follower with the sessions it had.
func TestWatchPresenceAfterRestart(t *testing.T) {
	url, restart := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	ann := "Ann"
	if _, err := cl.SetPresence(ctx, "forms", "42", "session-of-ann-0001", client.PresenceState{Name: &ann}); err != nil {
		t.Fatal(err)
	}
	ch := cl.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{{Collection: "forms", ID: "42"}}, Ready: true, Presence: true})
	for ev := next(t, ch); ev.Type != client.EventReady; ev = next(t, ch) {
		if ev.Type == client.EventPresence && !slices.Equal(sessionNames(ev.Sessions), []string{"Ann"}) {
			t.Fatalf("presence %+v, want Ann's", ev.Sessions)
		}
	}
	restart()
	var got []client.Event
	for ev := next(t, ch); ev.Type != client.EventReady; ev = next(t, ch) {
		got = append(got, ev)
	}
	var last *client.Event
	for i := range got {
		if got[i].Type == client.EventPresence {
			last = &got[i]
		}
	}
	if last == nil || len(last.Sessions) != 0 || last.Collection != "forms" || last.ID != "42" {
		t.Fatalf("events of the stream after the restart %+v: want forms/42's presence, empty, before ready", got)
	}
}
