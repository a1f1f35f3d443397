// Package benchdoc generates the deterministic JSON documents and patches
// that patchd's benchmarks and load generator share, so that every figure
// is measured on the same shapes.
package benchdoc

import (
	"fmt"
	"strconv"
	"strings"
)

// Sizes are the document sizes the benchmarks use.
var Sizes = []struct {
	Name  string
	Bytes int
}{
	{"1KB", 1 << 10},
	{"100KB", 100 << 10},
	{"1MB", 1000 << 10},
}

// Doc returns a JSON object of about size bytes (never more than size,
// at least about 200): a form-like record with a counter "n", a few string
// members, and an "items" array of small objects that grows with size. It
// is already in canonical form (members sorted, no white space), so its
// bytes are what patchd would store. The same seed gives the same bytes.
func Doc(size, seed int) []byte {
	var b strings.Builder
	head := fmt.Sprintf(`{"email":"user%d@example.com","items":[`, seed)
	tail := fmt.Sprintf(`],"n":0,"name":"User %d","notes":"%s","phone":"555-%04d"}`, seed, strings.Repeat("x", 40), seed%10000)
	b.WriteString(head)
	budget := size - len(head) - len(tail)
	for i := 0; ; i++ {
		item := fmt.Sprintf(`{"price":"%d.%02d","qty":%d,"sku":"SKU-%06d","tags":["a","b"]}`, i%1000, i%100, i%7+1, i)
		if i > 0 {
			item = "," + item
		}
		if b.Len()-len(head)+len(item) > budget {
			break
		}
		b.WriteString(item)
	}
	b.WriteString(tail)
	return []byte(b.String())
}

// ReplaceN returns a one-op JSON Patch setting "/n" to v.
func ReplaceN(v int) []byte {
	return []byte(`[{"op":"replace","path":"/n","value":` + strconv.Itoa(v) + `}]`)
}

// ReplaceField returns a one-op JSON Patch setting member name to the
// string value v (add: it creates the member if needed).
func ReplaceField(name, v string) []byte {
	return []byte(`[{"op":"add","path":"/` + name + `","value":"` + v + `"}]`)
}
