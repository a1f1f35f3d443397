package patch

// EncodeCreate returns what EncodeOps returns for the one op that creates
// a whole document (a Root op without an old value), given the document's
// canonical bytes, without decoding them.
func EncodeCreate(canonical []byte) []byte {
	const head, tail = `[{"k":"root","p":[],"v":`, `}]`
	out := make([]byte, 0, len(head)+len(canonical)+len(tail))
	out = append(out, head...)
	out = append(out, canonical...)
	return append(out, tail...)
}

// EncodeDelete returns what EncodeOps returns for the one op that deletes
// a whole document (a Del op with an empty path), given the document's
// canonical bytes, without decoding them.
func EncodeDelete(canonical []byte) []byte {
	const head, tail = `[{"k":"del","o":`, `,"p":[]}]`
	out := make([]byte, 0, len(head)+len(canonical)+len(tail))
	out = append(out, head...)
	out = append(out, canonical...)
	return append(out, tail...)
}
