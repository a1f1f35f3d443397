package store_test

import (
	"strings"
	"testing"

	"github.com/patchd/patchd/store"
)

// TestRedact: no password of a store location reaches a log, whether in
// the URL's user part or as a parameter.
func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://patchd:secret@db:5432/patchd", "postgres://patchd:xxxxx@db:5432/patchd"},
		{"postgres://patchd@db/patchd?password=secret&sslmode=disable", "postgres://patchd@db/patchd?password=xxxxx&sslmode=disable"},
		{"postgres://patchd@db/patchd?sslmode=verify-full&sslpassword=secret", "postgres://patchd@db/patchd?sslmode=verify-full&sslpassword=xxxxx"},
		{"postgres://patchd@db/patchd?sslmode=disable", "postgres://patchd@db/patchd?sslmode=disable"},
		// libpq splits on '&' alone: a ';' is part of the value.
		{"postgres://u@db/p?sslmode=disable&password=se;cret", "postgres://u@db/p?sslmode=disable&password=xxxxx"},
		{"postgres://u@db/p?application_name=a%20b;c&pass%77ord=secret&password=secret2", "postgres://u@db/p?application_name=a%20b;c&pass%77ord=xxxxx&password=xxxxx"},
		{"./data/patchd.db", "./data/patchd.db"},
	} {
		got := store.Redact(tc.in)
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "cret") {
			t.Errorf("Redact(%q) = %q keeps the password", tc.in, got)
		}
	}
}
