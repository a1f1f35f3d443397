package patch

import "slices"

// MergePatch applies an RFC 7396 JSON Merge Patch to doc in place and
// returns the result with the normalized operations that turn doc into it:
// objDiff(doc, result) of REBASE.md section 2, computed while merging.
// Members are visited in byte order; a null member deletes (and is a no-op
// when the member is absent); an object merges into an object; anything
// else, arrays included, replaces the member whole, so nulls inside arrays
// are kept as values. A member whose new value is identical to the old one
// yields no op. A patch that is not an object replaces the whole document,
// and a document that is not an object is treated as {}, as the RFC says.
func MergePatch(doc, mp any) (any, []Op) {
	pm, ok := mp.(map[string]any)
	if !ok {
		return mp, []Op{{Kind: OpRoot, Value: mp, Old: doc, HadOld: true, Client: 0}}
	}
	target, ok := doc.(map[string]any)
	if !ok {
		v := pruneNulls(pm)
		return v, []Op{{Kind: OpRoot, Value: v, Old: doc, HadOld: true, Client: 0}}
	}
	var ops []Op
	mergeInto(target, pm, nil, &ops)
	return target, ops
}

func mergeInto(target, pm map[string]any, path Path, ops *[]Op) {
	keys := make([]string, 0, len(pm))
	for k := range pm {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		pv := pm[k]
		old, had := target[k]
		switch pv := pv.(type) {
		case nil:
			if had {
				delete(target, k)
				*ops = append(*ops, clientOp(len(*ops), Op{Kind: OpDel, Path: path.child(Key(k)), Old: old}))
			}
			continue
		case map[string]any:
			if tm, ok := old.(map[string]any); ok {
				mergeInto(tm, pv, path.child(Key(k)), ops)
				continue
			}
			v := pruneNulls(pv)
			target[k] = v
			*ops = append(*ops, clientOp(len(*ops), Op{Kind: OpPut, Path: path.child(Key(k)), Value: Clone(v), Old: old, HadOld: had}))
			continue
		}
		if had && identical(old, pv) {
			continue
		}
		target[k] = pv
		*ops = append(*ops, clientOp(len(*ops), Op{Kind: OpPut, Path: path.child(Key(k)), Value: Clone(pv), Old: old, HadOld: had}))
	}
}

// pruneNulls returns MergePatch({}, m): m without its null members, at every
// level of nested objects (arrays are values and keep their nulls).
func pruneNulls(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			continue
		case map[string]any:
			out[k] = pruneNulls(v)
		default:
			out[k] = v
		}
	}
	return out
}

// Diff returns the normalized operations that turn object a into object b
// (objDiff of REBASE.md section 2): depth-first, members in byte order,
// recursing where both sides are objects, a del for a member gone, a put of
// the whole new value for a new or changed member (arrays are atomic), and
// nothing for an identical one. Neither argument is modified; ops share
// values with them, so neither may be modified while the ops are in use.
func Diff(a, b map[string]any) []Op {
	var ops []Op
	diffInto(a, b, nil, &ops)
	return ops
}

func diffInto(a, b map[string]any, path Path, ops *[]Op) {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		av, ina := a[k]
		bv, inb := b[k]
		p := path.child(Key(k))
		switch {
		case !inb:
			*ops = append(*ops, clientOp(len(*ops), Op{Kind: OpDel, Path: p, Old: av}))
		case !ina:
			*ops = append(*ops, clientOp(len(*ops), Op{Kind: OpPut, Path: p, Value: bv}))
		default:
			am, aok := av.(map[string]any)
			bm, bok := bv.(map[string]any)
			if aok && bok {
				diffInto(am, bm, p, ops)
			} else if !identical(av, bv) {
				*ops = append(*ops, clientOp(len(*ops), Op{Kind: OpPut, Path: p, Value: bv, Old: av, HadOld: true}))
			}
		}
	}
}

// clientOp numbers an op of a merge patch or PUT body: each op stands for
// itself in conflict reports, named by its path.
func clientOp(i int, o Op) Op {
	o.Client, o.Sent = i, o.Path.String()
	return o
}
