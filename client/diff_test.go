package client_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/patchd/patchd/client"
)

func TestDiff(t *testing.T) {
	items := `[{"id":"a","t":"A"},{"id":"b","t":"B"},{"id":"c","t":"C"}]`
	tests := []struct {
		name          string
		before, after string
		key           string
		want          string // the ops as JSON
	}{
		{name: "Equal", before: `{"a":[1,{"b":2}]}`, after: `{"a":[1,{"b":2}]}`, want: `[]`},
		{name: "FormFields",
			before: `{"name":"Ann","email":"a@x","urgent":false,"gone":1,"nested":{"a":1,"b":2}}`,
			after:  `{"name":"Ann","email":"ann@x","urgent":true,"nested":{"a":1,"b":3},"added":"y"}`,
			want: `[{"op":"remove","path":"/gone"},{"op":"add","path":"/added","value":"y"},` +
				`{"op":"replace","path":"/email","value":"ann@x"},{"op":"replace","path":"/nested/b","value":3},` +
				`{"op":"replace","path":"/urgent","value":true}]`},
		{name: "ArrayWhole", before: `{"a":[1,2]}`, after: `{"a":[1,3]}`, want: `[{"op":"replace","path":"/a","value":[1,3]}]`},
		{name: "Escaped", before: `{"a/b":1,"c~d":1}`, after: `{"a/b":2,"c~d":2}`,
			want: `[{"op":"replace","path":"/a~1b","value":2},{"op":"replace","path":"/c~0d","value":2}]`},
		{name: "TypeChange", before: `{"a":{"b":1}}`, after: `{"a":[1]}`, want: `[{"op":"replace","path":"/a","value":[1]}]`},
		{name: "Root", before: `{"a":1}`, after: `[1]`, want: `[{"op":"replace","path":"","value":[1]}]`},
		{name: "NumberLiteral", before: `{"n":1}`, after: `{"n":12345678901234567890123}`,
			want: `[{"op":"replace","path":"/n","value":12345678901234567890123}]`},
		{name: "KeyedEdit", key: "id", before: `{"items":` + items + `}`,
			after: `{"items":[{"id":"a","t":"A"},{"id":"b","t":"B2"},{"id":"c","t":"C"}]}`,
			want:  `[{"op":"test","path":"/items/1/id","value":"b"},{"op":"replace","path":"/items/1/t","value":"B2"}]`},
		{name: "KeyedRemove", key: "id", before: `{"items":` + items + `}`,
			after: `{"items":[{"id":"a","t":"A"},{"id":"c","t":"C"}]}`,
			want:  `[{"op":"test","path":"/items/1/id","value":"b"},{"op":"remove","path":"/items/1"}]`},
		{name: "KeyedAppend", key: "id", before: `{"items":` + items + `}`,
			after: `{"items":[{"id":"a","t":"A"},{"id":"b","t":"B"},{"id":"c","t":"C"},{"id":"d","t":"D"}]}`,
			want:  `[{"op":"add","path":"/items/-","value":{"id":"d","t":"D"}}]`},
		{name: "KeyedInsertEditRemove", key: "id", before: `{"items":` + items + `}`,
			after: `{"items":[{"id":"z","t":"Z"},{"id":"a","t":"A2"},{"id":"c","t":"C"}]}`,
			want: `[{"op":"test","path":"/items/1/id","value":"b"},{"op":"remove","path":"/items/1"},` +
				`{"op":"add","path":"/items/0","value":{"id":"z","t":"Z"}},` +
				`{"op":"test","path":"/items/1/id","value":"a"},{"op":"replace","path":"/items/1/t","value":"A2"}]`},
		{name: "KeyedNumbers", key: "id", before: `{"items":[{"id":1,"q":1},{"id":2,"q":1}]}`,
			after: `{"items":[{"id":1,"q":1},{"id":2,"q":5}]}`,
			want:  `[{"op":"test","path":"/items/1/id","value":2},{"op":"replace","path":"/items/1/q","value":5}]`},
		{name: "KeyedReordered", key: "id", before: `{"items":` + items + `}`,
			after: `{"items":[{"id":"b","t":"B"},{"id":"a","t":"A"},{"id":"c","t":"C"}]}`,
			want:  `[{"op":"replace","path":"/items","value":[{"id":"b","t":"B"},{"id":"a","t":"A"},{"id":"c","t":"C"}]}]`},
		{name: "KeyRepeated", key: "id", before: `{"items":[{"id":1},{"id":1}]}`, after: `{"items":[{"id":1}]}`,
			want: `[{"op":"replace","path":"/items","value":[{"id":1}]}]`},
		{name: "KeyMissing", key: "id", before: `{"items":[{"id":1},{"x":1}]}`, after: `{"items":[{"id":1}]}`,
			want: `[{"op":"replace","path":"/items","value":[{"id":1}]}]`},
		{name: "NoKey", before: `{"items":` + items + `}`, after: `{"items":[{"id":"a","t":"A"}]}`,
			want: `[{"op":"replace","path":"/items","value":[{"id":"a","t":"A"}]}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := client.Diff(json.RawMessage(tc.before), json.RawMessage(tc.after), tc.key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(ops)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("Diff=%s\nwant %s", got, tc.want)
			}
		})
	}
	if _, err := client.Diff(json.RawMessage(`{`), json.RawMessage(`{}`), ""); err == nil {
		t.Fatal("Diff of invalid JSON: no error")
	}
}

func TestOpJSON(t *testing.T) {
	tests := []struct {
		name string
		op   client.Op
		want string
	}{
		{name: "AddNull", op: client.Op{Op: "add", Path: "/a"}, want: `{"op":"add","path":"/a","value":null}`},
		{name: "Remove", op: client.Op{Op: "remove", Path: "/a"}, want: `{"op":"remove","path":"/a"}`},
		{name: "CopyFromRoot", op: client.Op{Op: "copy", Path: "/a"}, want: `{"op":"copy","path":"/a","from":""}`},
		{name: "Move", op: client.Op{Op: "move", From: "/b", Path: "/a"}, want: `{"op":"move","path":"/a","from":"/b"}`},
		{name: "Test", op: client.Op{Op: "test", Path: "", Value: json.RawMessage(`{"a":1}`)}, want: `{"op":"test","path":"","value":{"a":1}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.op)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			var back client.Op
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if again, _ := json.Marshal(back); !bytes.Equal(again, got) {
				t.Fatalf("round trip: %s, want %s", again, got)
			}
		})
	}
}

// randomPair returns two related documents for the diff properties: form
// fields, nested values, and line items keyed by "id".
func randomPair(r *rand.Rand) (a, b map[string]any) {
	pick := func(xs ...any) any { return xs[r.IntN(len(xs))] }
	scalar := func() any { return pick(nil, true, false, 0, 1, 2.5, "x", "y", "", "a/b~") }
	var value func(depth int) any
	value = func(depth int) any {
		if depth > 2 || r.Float64() < 0.4 {
			return scalar()
		}
		if r.Float64() < 0.5 {
			o := map[string]any{}
			for i := r.IntN(4); i > 0; i-- {
				o[pick("a", "b", "c", "d~", "e/f").(string)] = value(depth + 1)
			}
			return o
		}
		arr := []any{}
		for i := r.IntN(4); i > 0; i-- {
			arr = append(arr, value(depth+1))
		}
		return arr
	}
	items := func() []any {
		out := []any{}
		for _, id := range []string{"p", "q", "r", "s", "t"} {
			if r.Float64() < 0.6 {
				out = append(out, map[string]any{"id": id, "t": pick("x", "y", "z"), "n": pick(1, 2)})
			}
		}
		return out
	}
	a = map[string]any{"v": value(0), "items": items(), "w": value(0)}
	if r.Float64() < 0.3 {
		return a, a
	}
	w := a["w"]
	if r.Float64() < 0.5 {
		w = value(0)
	}
	return a, map[string]any{"v": value(0), "items": items(), "w": w}
}

// sameJSON reports whether two JSON texts are the same value.
func sameJSON(t *testing.T, x, y []byte) bool {
	t.Helper()
	var vx, vy any
	if err := json.Unmarshal(x, &vx); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(y, &vy); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(vx, vy)
}

// TestDiffAppliesOnServer checks, on generated pairs, that the server
// turns a into b with Diff's ops, and with the guarded ops Update sends
// (which must pass their tests on the version they were made from).
func TestDiffAppliesOnServer(t *testing.T) {
	url, _ := startServer(t)
	cl := client.New(url)
	ctx := testContext(t)
	r := rand.New(rand.NewPCG(17, 1))
	const cases = 300
	for i := range cases {
		a, b := randomPair(r)
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		id := fmt.Sprint(i)
		doc := mustCreate(t, cl, "diff", id, string(ja))
		var got *client.Document
		var err error
		if i%2 == 0 {
			var ops []client.Op
			if ops, err = client.Diff(ja, jb, "id"); err != nil {
				t.Fatal(err)
			}
			got, err = cl.Patch(ctx, "diff", id, ops, client.IfMatch(doc.ETag))
			if err != nil {
				t.Fatalf("a=%s b=%s ops=%v: %v", ja, jb, ops, err)
			}
		} else {
			calls := 0
			got, err = client.Update(ctx, cl, "diff", id, func(v *map[string]any) error {
				calls++
				*v = b
				return nil
			})
			if err != nil || calls != 1 {
				t.Fatalf("a=%s b=%s: Update: %v (%d calls)", ja, jb, err, calls)
			}
		}
		if !sameJSON(t, got.Value, jb) {
			t.Fatalf("a=%s\nb=%s\ngot %s", ja, jb, got.Value)
		}
	}
}
