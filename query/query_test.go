package query_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/patchd/patchd/patch"
	"github.com/patchd/patchd/query"
)

const doc = `{"a":{"b":[1,2]},"n":1.0,"neg":-3,"s":"open","t":"ab\u00e9","x":null,"o":{"eq":1}}`

func TestWhereMatch(t *testing.T) {
	tree, err := patch.Parse([]byte(doc), patch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	canonical := patch.Canonical(tree)
	for _, tc := range []struct {
		name, where string
		want        bool
	}{
		{name: "Empty", where: `{}`, want: true},
		{name: "EqualArray", where: `{"/a/b":[1,2]}`, want: true},
		{name: "Equal", where: `{"/s":"open"}`, want: true},
		{name: "EqualNumberByValue", where: `{"/n":1}`, want: true},
		{name: "NotEqual", where: `{"/s":"closed"}`, want: false},
		{name: "EqualObject", where: `{"/a":{"eq":{"b":[1,2.0]}}}`, want: true},
		{name: "EqualNull", where: `{"/x":null}`, want: true},
		{name: "MissingIsNotNull", where: `{"/missing":null}`, want: false},
		{name: "EqOperatorObject", where: `{"/o":{"eq":{"eq":1}}}`, want: true},
		{name: "Ne", where: `{"/s":{"ne":"closed"}}`, want: true},
		{name: "NeMissing", where: `{"/missing":{"ne":1}}`, want: true},
		{name: "Lt", where: `{"/neg":{"lt":-2}}`, want: true},
		{name: "LtExact", where: `{"/n":{"lt":1.0}}`, want: false},
		{name: "Le", where: `{"/n":{"le":1}}`, want: true},
		{name: "GtGe", where: `{"/n":{"gt":0,"ge":1}}`, want: true},
		{name: "RangeFails", where: `{"/n":{"gt":0,"lt":1}}`, want: false},
		{name: "StringsByCodePoint", where: `{"/t":{"gt":"abz"}}`, want: true},
		{name: "NoCrossType", where: `{"/s":{"gt":1}}`, want: false},
		{name: "NoCrossTypeLe", where: `{"/n":{"le":"z"}}`, want: false},
		{name: "In", where: `{"/s":{"in":["closed","open"]}}`, want: true},
		{name: "InNumbers", where: `{"/n":{"in":[2,1e0]}}`, want: true},
		{name: "NotIn", where: `{"/s":{"in":[]}}`, want: false},
		{name: "Exists", where: `{"/x":{"exists":true},"/nope":{"exists":false}}`, want: true},
		{name: "ExistsFails", where: `{"/nope":{"exists":true}}`, want: false},
		{name: "Prefix", where: `{"/s":{"prefix":"op"}}`, want: true},
		{name: "PrefixNotString", where: `{"/n":{"prefix":"1"}}`, want: false},
		{name: "ArrayIndex", where: `{"/a/b/1":2}`, want: true},
		{name: "AllMustHold", where: `{"/s":"open","/n":2}`, want: false},
		{name: "ManyPointers", where: `{"":{"exists":true},"/a":{"exists":true},"/a/b":[1,2],"/a/b/0":{"lt":2},"/s":"open"}`, want: true},
		{name: "ManyPointersOneFails", where: `{"":{"exists":true},"/a":{"exists":true},"/a/b/0":{"lt":2},"/s":"open","/x":{"ne":null}}`, want: false},
		{name: "ManyPointersMissing", where: `{"/a":{"exists":true},"/n":1,"/s":"open","/missing":{"ne":1},"/gone":{"exists":false}}`, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := query.ParseWhere(tc.where)
			if err != nil {
				t.Fatalf("ParseWhere(%s): %v", tc.where, err)
			}
			if got := w.Match(tree); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
			if got := w.MatchCanonical(canonical); got != tc.want {
				t.Errorf("MatchCanonical = %v, want %v", got, tc.want)
			}
			if w.Match(nil) || w.MatchCanonical(nil) {
				t.Errorf("a document that does not exist matches")
			}
		})
	}
}

func TestWhereInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, where, says string
	}{
		{name: "NotJSON", where: `{"/a":`, says: "not valid JSON"},
		{name: "NotObject", where: `["/a"]`, says: "must be a JSON object"},
		{name: "BadPointer", where: `{"a":1}`, says: `"a" is not a JSON Pointer`},
		{name: "BadEscape", where: `{"/a~2":1}`, says: "not a JSON Pointer"},
		{name: "Mixed", where: `{"/a":{"eq":1,"b":2}}`, says: `"b" is not an operator`},
		{name: "ObjectValue", where: `{"/a":{"gte":1}}`, says: `"gte" is not an operator`},
		{name: "EmptyOperators", where: `{"/a":{}}`, says: "names no operator"},
		{name: "LtTakesScalar", where: `{"/a":{"lt":[1]}}`, says: "lt takes a number or a string"},
		{name: "InTakesArray", where: `{"/a":{"in":1}}`, says: "in takes an array"},
		{name: "ExistsTakesBool", where: `{"/a":{"exists":1}}`, says: "exists takes true or false"},
		{name: "PrefixTakesString", where: `{"/a":{"prefix":1}}`, says: "prefix takes a string"},
		{name: "Duplicate", where: `{"/a":1,"/a":2}`, says: "not valid JSON"},
		{name: "LongPointer", where: `{"` + strings.Repeat("/a", query.MaxPointerTokens+1) + `":1}`, says: "a pointer of 1001 tokens; at most 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := query.ParseWhere(tc.where)
			if !errors.Is(err, query.ErrInvalid) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("ParseWhere(%s) = %v, want ErrInvalid saying %q", tc.where, err, tc.says)
			}
		})
	}
	many := "{"
	for i := range query.MaxConditions + 1 {
		if i > 0 {
			many += ","
		}
		many += `"/k` + strings.Repeat("x", i) + `":1`
	}
	if _, err := query.ParseWhere(many + "}"); !errors.Is(err, query.ErrInvalid) {
		t.Fatalf("%d conditions: %v", query.MaxConditions+1, err)
	}
}

func TestOrder(t *testing.T) {
	docs := map[string]string{
		"a": `{"p":2}`, "b": `{"p":10}`, "c": `{}`, "d": `{"p":"x"}`, "e": `{"p":2.0}`,
		"f": `{"p":null}`, "g": `{"p":true}`, "h": `{"p":[1]}`,
	}
	sorted := func(o query.Order) string {
		var keys []query.Key
		for id, body := range docs {
			keys = append(keys, o.KeyOf(id, []byte(body)))
		}
		for i := range keys { // insertion sort with o.Compare
			for j := i; j > 0 && o.Compare(keys[j-1], keys[j]) > 0; j-- {
				keys[j-1], keys[j] = keys[j], keys[j-1]
			}
		}
		var ids []string
		for _, k := range keys {
			ids = append(ids, k.ID)
		}
		return strings.Join(ids, "")
	}
	asc, err := query.ParseOrder("/p")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(asc), "fgaebdhc"; got != want {
		t.Errorf("ascending: %s, want %s", got, want)
	}
	desc, err := query.ParseOrder("-/p")
	if err != nil {
		t.Fatal(err)
	}
	// Equal values (2 and 2.0) still tie-break by id; missing stays last.
	if got, want := sorted(desc), "hdbaegfc"; got != want {
		t.Errorf("descending: %s, want %s", got, want)
	}
	// "-" is the pointer "" (the whole document), descending.
	whole, err := query.ParseOrder("-")
	if err != nil || !whole.Desc || whole.Ptr.String() != "" {
		t.Errorf(`ParseOrder("-") = %+v, %v; want the whole document, descending`, whole, err)
	}
	if _, err := query.ParseOrder(strings.Repeat("/a", query.MaxPointerTokens)); err != nil {
		t.Errorf("an order pointer of %d tokens: %v", query.MaxPointerTokens, err)
	}
	for _, bad := range []string{"", "p", "-p", "/a~", "--/p", strings.Repeat("/a", query.MaxPointerTokens+1)} {
		if _, err := query.ParseOrder(bad); !errors.Is(err, query.ErrInvalid) {
			t.Errorf("ParseOrder(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestKeyOfCutsStoredBytes: an array or object sort key is cut from the
// stored canonical bytes, without decoding; it must be the key that the
// decoded value gives.
func TestKeyOfCutsStoredBytes(t *testing.T) {
	big := `{"a":{"k":"` + strings.Repeat("z", 3000) + `","b":[1,2.50,{"x":null}]},"l":[3,"` + strings.Repeat("y", 2000) + `"],"s":"short"}`
	tree, err := patch.Parse([]byte(big), patch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	canonical := patch.Canonical(tree)
	for _, ptr := range []string{"/a", "/a/b", "/l", "/s", "/missing"} {
		o, err := query.ParseOrder(ptr)
		if err != nil {
			t.Fatal(err)
		}
		got := o.KeyOf("id", canonical)
		v, ok := o.Ptr.Get(tree)
		want := query.MakeKey("id", v, ok)
		if string(got.Canon) != string(want.Canon) || got.Missing != want.Missing || o.Compare(got, want) != 0 || len(got.Canon) > query.MaxKeyBytes {
			t.Errorf("%s: key %+.80v, want %+.80v", ptr, got, want)
		}
	}
}

// TestKeyHoldsNoDocument: a page keeps up to a thousand keys while it
// reads a collection; a key cut from a document's bytes must not keep
// those bytes alive (it shared them: a page of large documents held all
// of them).
func TestKeyHoldsNoDocument(t *testing.T) {
	doc := []byte(`{"a":[` + strings.Repeat("1,", 2000) + `1]}`)
	o, err := query.ParseOrder("/a")
	if err != nil {
		t.Fatal(err)
	}
	k := o.KeyOf("id", doc)
	before := string(k.Canon)
	for i := range doc {
		doc[i] = ' '
	}
	if string(k.Canon) != before || cap(k.Canon) > query.MaxKeyBytes {
		t.Fatalf("the key shares the document's bytes (cap %d)", cap(k.Canon))
	}
}

// TestInMatchesAsEquality: in holds exactly when one of its values is
// equal (patch.Equal) to the member, whatever the number's spelling, also
// for arrays and objects, which are compared one by one.
func TestInMatchesAsEquality(t *testing.T) {
	lits := []string{"0", "-0", "0.0", "1", "1.0", "10e-1", "0.1e1", "-1", "1e400", "10e399", "12345678901234567890123", "12345678901234567890123.000", "1.5", "15e-1", "2", "1E2", "100"}
	for _, a := range lits {
		for _, b := range lits {
			w, err := query.ParseWhere(`{"/x":{"in":[` + b + `,"s",null,[1],{"k":` + b + `}]}}`)
			if err != nil {
				t.Fatal(err)
			}
			for _, doc := range []string{`{"x":` + a + `}`, `{"x":{"k":` + a + `}}`} {
				tree, err := patch.Parse([]byte(doc), patch.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				x := tree.(map[string]any)["x"]
				want := patch.Equal(x, patch.Number(b))
				if m, ok := x.(map[string]any); ok {
					want = patch.Equal(m["k"], patch.Number(b))
				}
				if got := w.Match(tree); got != want {
					t.Errorf("%s in [%s ...]: %v, want %v", doc, b, got, want)
				}
			}
		}
	}
	for _, doc := range []string{`{"x":"s"}`, `{"x":null}`, `{"x":[1.0]}`} {
		w, _ := query.ParseWhere(`{"/x":{"in":[7,"s",null,[1]]}}`)
		tree, _ := patch.Parse([]byte(doc), patch.Limits{})
		if !w.Match(tree) {
			t.Errorf("%s: want a match", doc)
		}
	}
	w, _ := query.ParseWhere(`{"/x":{"in":[7,"s",null,[1]]}}`)
	for _, doc := range []string{`{"x":"t"}`, `{"x":false}`, `{"x":[2]}`, `{}`} {
		tree, _ := patch.Parse([]byte(doc), patch.Limits{})
		if w.Match(tree) {
			t.Errorf("%s: want no match", doc)
		}
	}
}

// BenchmarkWhereInLongNumbers: a filter whose in lists 1000 numbers of 57
// digits, judged on documents that match none of them.
func BenchmarkWhereInLongNumbers(b *testing.B) {
	var vals []string
	for i := range 1000 {
		vals = append(vals, fmt.Sprintf("9%056d", i))
	}
	w, err := query.ParseWhere(`{"/x":{"in":[` + strings.Join(vals, ",") + `]}}`)
	if err != nil {
		b.Fatal(err)
	}
	doc := []byte(`{"x":123456789012345678901234567890123456789012345678901234567.5,"y":"pad"}`)
	b.ResetTimer()
	for range b.N {
		if w.MatchCanonical(doc) {
			b.Fatal("matched")
		}
	}
}
