package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/patchd/patchd/client"
)

func TestPresence(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := context.Background()
	const ann, bob = "0b6f2a9e-ann-0000-0000-000000000001", "0b6f2a9e-bob-0000-0000-000000000002"
	name, focus := "Ann", "/phone"
	s, err := cl.SetPresence(ctx, "forms", "42", ann, client.PresenceState{Name: &name, Focus: &focus, Data: []byte(`{"typing":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Session != ann || s.Actor != "" || *s.Name != "Ann" || s.Color != nil || *s.Focus != "/phone" || string(s.Data) != `{"typing":true}` || time.Until(s.Expires) < 20*time.Second {
		t.Fatalf("SetPresence returned %+v", s)
	}
	if _, err := cl.SetPresence(ctx, "forms", "42", bob, client.PresenceState{}); err != nil {
		t.Fatal(err)
	}
	list, err := cl.Presence(ctx, "forms", "42")
	if err != nil || len(list) != 2 || list[0].Session != ann || list[1].Session != bob || list[1].Name != nil || list[1].Data != nil {
		t.Fatalf("Presence %+v, %v", list, err)
	}
	if err := cl.EndPresence(ctx, "forms", "42", ann); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndPresence(ctx, "forms", "42", ann); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("ending twice: %v", err)
	}
	if list, err := cl.Presence(ctx, "forms", "42"); err != nil || len(list) != 1 || list[0].Session != bob {
		t.Fatalf("Presence after EndPresence %+v, %v", list, err)
	}
	bad := "a/b"
	var p *client.Problem
	if _, err := cl.SetPresence(ctx, "forms", "42", bob, client.PresenceState{Focus: &bad}); !errors.As(err, &p) || p.Status != 400 {
		t.Fatalf("a focus that is not a JSON Pointer: %v", err)
	}
	if _, err := cl.SetPresence(ctx, "forms", "42", "short", client.PresenceState{}); !errors.As(err, &p) || p.Status != 400 {
		t.Fatalf("a short session id: %v", err)
	}
}
