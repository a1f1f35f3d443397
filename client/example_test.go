package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/patchd/patchd/client"
)

func ExampleNew() {
	srv := newExampleServer() // a patchd on loopback, for the example
	defer srv.Close()
	ctx := context.Background()

	cl := client.New(srv.URL,
		client.WithUserAgent("orders-service/1.0"),
		client.WithRetry(client.RetryPolicy{Attempts: 3, BaseDelay: 50 * time.Millisecond}),
		// client.WithToken(os.Getenv("PATCHD_TOKEN")) on a server with --tokens
	)
	doc, err := cl.Create(ctx, "forms", "42", map[string]string{"name": "Ann"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(doc.Created, string(doc.Value))
	// Output: true {"name":"Ann"}
}

func ExampleClient_Get() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	if _, err := cl.Create(ctx, "forms", "42", json.RawMessage(`{"name":"Ann","phone":"555-0100"}`)); err != nil {
		fmt.Println(err)
		return
	}

	doc, err := cl.Get(ctx, "forms", "42")
	if err != nil {
		fmt.Println(err)
		return
	}
	var form struct {
		Name  string `json:"name"`
		Phone string `json:"phone"`
	}
	if err := doc.Decode(&form); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(form.Name, form.Phone)

	_, err = cl.Get(ctx, "forms", "43")
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// Ann 555-0100
	// true
}

func ExampleClient_Put() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)

	doc, _ := cl.Put(ctx, "forms", "42", map[string]string{"name": "Ann"}) // creates
	// Replacing needs the version it replaces.
	_, err := cl.Put(ctx, "forms", "42", map[string]string{"name": "Bob"})
	fmt.Println(errors.Is(err, client.ErrPreconditionRequired))
	doc, err = cl.Put(ctx, "forms", "42", map[string]string{"name": "Bob"}, client.IfMatch(doc.ETag))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(doc.Value))
	// Output:
	// true
	// {"name":"Bob"}
}

func ExampleClient_Create() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)

	_, err := cl.Create(ctx, "forms", "42", map[string]string{"name": "Ann"})
	fmt.Println(err)
	_, err = cl.Create(ctx, "forms", "42", map[string]string{"name": "Bob"})
	var pe *client.PreconditionError
	fmt.Println(errors.As(err, &pe), pe.Problem.Name())
	// Output:
	// <nil>
	// true precondition-failed
}

func ExampleClient_Patch() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	e1, _ := cl.Create(ctx, "forms", "42", map[string]string{"name": "Ann", "phone": "555-0100", "email": "ann@example.com"})

	// Alice and Bob both read version e1. Alice changes the phone.
	_, err := cl.Patch(ctx, "forms", "42", []client.Op{
		{Op: "replace", Path: "/phone", Value: json.RawMessage(`"555-0199"`)},
	}, client.IfMatch(e1.ETag))
	if err != nil {
		fmt.Println(err)
		return
	}
	// Bob changes the email, still from e1: the server rebases his edit.
	bob, err := cl.Patch(ctx, "forms", "42", json.RawMessage(`[{"op":"replace","path":"/email","value":"ann@example.org"}]`), client.IfMatch(e1.ETag))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(bob.RebasedFrom == e1.ETag)
	fmt.Println(string(bob.Value))
	// Output:
	// true
	// {"email":"ann@example.org","name":"Ann","phone":"555-0199"}
}

func ExampleClient_Merge() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	doc, _ := cl.Create(ctx, "forms", "42", json.RawMessage(`{"name":"Ann","fax":"555-0101"}`))

	doc, err := cl.Merge(ctx, "forms", "42", map[string]any{"phone": "555-0100", "fax": nil}, client.IfMatch(doc.ETag))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(doc.Value))
	// Output: {"name":"Ann","phone":"555-0100"}
}

func ExampleClient_Insert() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)

	// The server picks the id; a retry after a lost answer gets the same document.
	doc, err := cl.Insert(ctx, "orders", map[string]any{"status": "open", "total": 12})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(doc.ID != "", doc.Created, string(doc.Value))
	// Output: true true {"status":"open","total":12}
}

func ExampleClient_Batch() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	order, _ := cl.Create(ctx, "orders", "7", map[string]any{"status": "open", "total": 12})

	// All or nothing: the order is paid and its receipt made, or neither.
	docs, err := cl.Batch(ctx, []client.BatchWrite{
		client.BatchMerge("orders", "7", map[string]string{"status": "paid"}, client.IfMatch(order.ETag)),
		client.BatchPut("receipts", "7", map[string]any{"order": "7", "total": 12}),
	})
	var be *client.BatchError
	if errors.As(err, &be) {
		fmt.Println("write", be.Index, "refused:", be.Err)
		return
	}
	fmt.Println(string(docs[0].Value), docs[1].Created)
	// Output: {"status":"paid","total":12} true
}

func ExampleClient_Revert() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	doc, _ := cl.Create(ctx, "forms", "42", map[string]string{"name": "Ann", "phone": "555-0100"})
	doc, _ = cl.Merge(ctx, "forms", "42", map[string]string{"phone": "555-0199"}, client.IfMatch(doc.ETag)) // version 2
	doc, _ = cl.Merge(ctx, "forms", "42", map[string]string{"name": "Ann Lee"}, client.IfMatch(doc.ETag))   // version 3

	// Undo version 2 only: version 3 is kept.
	doc, err := cl.Revert(ctx, "forms", "42", 2, client.IfMatch(doc.ETag))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(doc.Value))
	// Output: {"name":"Ann Lee","phone":"555-0100"}
}

func ExampleConflictError() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	e1, _ := cl.Create(ctx, "forms", "42", map[string]string{"phone": "555-0100"})
	_, _ = cl.Merge(ctx, "forms", "42", map[string]string{"phone": "555-0199"}, client.IfMatch(e1.ETag))

	// Another change of the phone made from e1 overlaps: nothing is written.
	_, err := cl.Merge(ctx, "forms", "42", map[string]string{"phone": "555-0000"}, client.IfMatch(e1.ETag))
	var ce *client.ConflictError
	if errors.As(err, &ce) {
		cur, _ := ce.Current(ctx)
		fmt.Println(ce.Paths(), ce.Conflicts[0].Reason, string(cur.Value))
	}
	// Output: [/phone] overlap {"phone":"555-0199"}
}

func ExampleClient_Delete() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	doc, _ := cl.Create(ctx, "forms", "42", map[string]string{"name": "Ann"})

	fmt.Println(cl.Delete(ctx, "forms", "42", client.IfMatch(doc.ETag)))
	_, err := cl.Get(ctx, "forms", "42")
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// <nil>
	// true
}

func ExampleClient_List() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	for _, id := range []string{"c", "a", "b"} {
		_, _ = cl.Create(ctx, "forms", id, map[string]string{"id": id})
	}

	page, err := cl.List(ctx, "forms", client.ListOptions{Limit: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, it := range page.Items {
		fmt.Println(it.ID)
	}
	fmt.Println("next:", page.Next)
	// Output:
	// a
	// b
	// next: b
}

func ExampleClient_ListAll() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	for _, id := range []string{"c", "a", "b"} {
		_, _ = cl.Create(ctx, "forms", id, map[string]string{"id": id})
	}

	for it, err := range cl.ListAll(ctx, "forms", client.ListOptions{Limit: 2}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Print(it.ID, " ")
	}
	fmt.Println()
	// Output: a b c
}

func ExampleClient_History() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	doc, _ := cl.Create(ctx, "forms", "42", map[string]string{"name": "Ann"})
	_, _ = cl.Merge(ctx, "forms", "42", map[string]string{"phone": "555-0100"}, client.IfMatch(doc.ETag))

	page, err := cl.History(ctx, "forms", "42", client.HistoryOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, v := range page.Versions {
		ops, _ := json.Marshal(v.Ops)
		fmt.Println(v.Seq, v.Kind, string(ops))
	}
	// Output:
	// 1 put [{"op":"add","path":"","value":{"name":"Ann"}}]
	// 2 merge-patch [{"op":"add","path":"/phone","value":"555-0100"}]
}

func ExampleUpdate() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()
	cl := client.New(srv.URL)
	_, _ = cl.Create(ctx, "orders", "7", json.RawMessage(`{"status":"open","items":[{"id":"a","qty":1},{"id":"b","qty":1}]}`))

	type Item struct {
		ID  string `json:"id"`
		Qty int    `json:"qty"`
	}
	type Order struct {
		Status string `json:"status"`
		Items  []Item `json:"items"`
	}
	// One test and one op per changed member: other members, and other
	// line items, can change concurrently without a conflict.
	doc, err := client.Update(ctx, cl, "orders", "7", func(o *Order) error {
		o.Items[1].Qty++
		o.Items = append(o.Items, Item{ID: "c", Qty: 3})
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(doc.Value))
	// Output: {"items":[{"id":"a","qty":1},{"id":"b","qty":2},{"id":"c","qty":3}],"status":"open"}
}

func ExampleClient_Watch() {
	srv := newExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := client.New(srv.URL)
	doc, _ := cl.Create(ctx, "forms", "42", map[string]string{"name": "Ann"})

	events := cl.Watch(ctx, client.Subscriptions{Docs: []client.DocSubscription{
		{Collection: "forms", ID: "42"}, // After: the last Seq seen, to resume
	}})
	ev := <-events
	fmt.Println(ev.Type, ev.Seq, string(ev.Value))

	_, _ = cl.Merge(ctx, "forms", "42", map[string]string{"phone": "555-0100"}, client.IfMatch(doc.ETag))
	ev = <-events
	ops, _ := json.Marshal(ev.Version.Ops)
	fmt.Println(ev.Type, ev.Seq, string(ops))
	// Output:
	// snapshot 1 {"name":"Ann"}
	// version 2 [{"op":"add","path":"/phone","value":"555-0100"}]
}

func ExampleClient_Watch_collection() {
	srv := newExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := client.New(srv.URL)

	// The open orders: every change of a document that is open before or
	// after it. Keep the last Cursor to resume later (After).
	events := cl.Watch(ctx, client.Subscriptions{
		Collections: []client.CollectionSubscription{client.Collection("orders", map[string]any{"/status": "open"})},
		Ready:       true,
	})
	<-events // ready: from here on, changes are live

	doc, _ := cl.Create(ctx, "orders", "7", map[string]any{"status": "open", "total": 12})
	_, _ = cl.Merge(ctx, "orders", "7", map[string]any{"status": "paid"}, client.IfMatch(doc.ETag))
	_, _ = cl.Create(ctx, "orders", "8", map[string]any{"status": "paid"}) // never open: not sent
	_, _ = cl.Create(ctx, "orders", "9", map[string]any{"status": "open"})
	for range 3 {
		ev := <-events
		fmt.Println(ev.Type, ev.ID, ev.Seq, ev.Match, ev.Cursor != "")
	}
	// Output:
	// change 7 1 true true
	// change 7 2 false true
	// change 9 1 true true
}

func ExampleDiff() {
	before := json.RawMessage(`{"name":"Ann","items":[{"id":"a","qty":1},{"id":"b","qty":1}]}`)
	after := json.RawMessage(`{"name":"Ann B.","items":[{"id":"b","qty":5}]}`)
	ops, err := client.Diff(before, after, "id")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, op := range ops {
		b, _ := json.Marshal(op)
		fmt.Println(string(b))
	}
	// Output:
	// {"op":"test","path":"/items/0/id","value":"a"}
	// {"op":"remove","path":"/items/0"}
	// {"op":"test","path":"/items/0/id","value":"b"}
	// {"op":"replace","path":"/items/0/qty","value":5}
	// {"op":"replace","path":"/name","value":"Ann B."}
}
