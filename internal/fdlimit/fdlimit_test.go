package fdlimit_test

import (
	"os"
	"runtime"
	"testing"

	"github.com/patchd/patchd/internal/fdlimit"
)

// TestOpenCountsDescriptors: opening files shows in the count, and the
// limit after Raise is at least the count.
func TestOpenCountsDescriptors(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts /proc/self/fd")
	}
	before, err := fdlimit.Open()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	after, err := fdlimit.Open()
	if err != nil {
		t.Fatal(err)
	}
	if after-before != 10 {
		t.Fatalf("open descriptors %d then %d, want 10 more", before, after)
	}
	limit, err := fdlimit.Raise()
	if err != nil {
		t.Fatal(err)
	}
	if limit < after {
		t.Fatalf("limit %d below the %d descriptors open", limit, after)
	}
}
