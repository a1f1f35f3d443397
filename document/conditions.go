package document

import "strings"

// EntityTag is one parsed entity-tag (RFC 9110 section 8.8.3).
type EntityTag struct {
	Weak   bool
	Opaque string // with its double quotes
}

// ETagList is a parsed If-Match or If-None-Match field.
type ETagList struct {
	Present bool // the field was sent
	Any     bool // "*"
	Tags    []EntityTag
}

// ParseETagList parses every line of the conditional header field name. It
// returns an error wrapping ErrInvalidRequest when the syntax is wrong.
func ParseETagList(name string, lines []string) (ETagList, error) {
	if len(lines) == 0 {
		return ETagList{}, nil
	}
	l := ETagList{Present: true}
	for _, line := range lines {
		s := line
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				if l.Any || len(l.Tags) > 0 || strings.Trim(s[1:], " \t") != "" || len(lines) > 1 {
					return ETagList{}, fail(ErrInvalidRequest, name+": \"*\" must stand alone")
				}
				l.Any = true
				break
			}
			var t EntityTag
			if strings.HasPrefix(s, "W/") {
				t.Weak = true
				s = s[2:]
			}
			if s == "" || s[0] != '"' {
				return ETagList{}, fail(ErrInvalidRequest, name+": an entity-tag must be a double-quoted string, like \"abc\"")
			}
			end := 1
			for end < len(s) && s[end] != '"' {
				c := s[end]
				if c < 0x21 || c == 0x7f {
					return ETagList{}, fail(ErrInvalidRequest, name+": invalid character in entity-tag")
				}
				end++
			}
			if end == len(s) {
				return ETagList{}, fail(ErrInvalidRequest, name+": unterminated entity-tag")
			}
			t.Opaque = s[:end+1]
			l.Tags = append(l.Tags, t)
			s = strings.TrimLeft(s[end+1:], " \t")
			if s != "" && s[0] != ',' {
				return ETagList{}, fail(ErrInvalidRequest, name+": entity-tags must be separated by commas")
			}
		}
	}
	if !l.Any && len(l.Tags) == 0 {
		return ETagList{}, fail(ErrInvalidRequest, name+": empty list")
	}
	return l, nil
}

// MatchStrong reports whether the list matches etag by strong comparison
// (If-Match): "*" matches any existing representation, a weak tag never.
func (l ETagList) MatchStrong(etag string) bool {
	if l.Any {
		return true
	}
	for _, t := range l.Tags {
		if !t.Weak && t.Opaque == etag {
			return true
		}
	}
	return false
}

// MatchWeak reports whether the list matches etag by weak comparison
// (If-None-Match).
func (l ETagList) MatchWeak(etag string) bool {
	if l.Any {
		return true
	}
	for _, t := range l.Tags {
		if t.Opaque == etag {
			return true
		}
	}
	return false
}

// StrongTags returns the strong tags of the list, for base resolution.
func (l ETagList) StrongTags() []string {
	var out []string
	for _, t := range l.Tags {
		if !t.Weak {
			out = append(out, t.Opaque)
		}
	}
	return out
}

// Preconditions are a write's conditions (RFC 9110 section 13) and the one
// preference that changes its decision.
type Preconditions struct {
	IfMatch     ETagList
	IfNoneMatch ETagList
	// Strict turns rebase off (Prefer: handling=strict): a stale If-Match
	// is a 412 as RFC 9110 has it.
	Strict bool
}

// fastDecidable reports whether a write's preconditions may be refused from
// the current ETag alone: If-None-Match, a missing If-Match, or strict.
func (p Preconditions) fastDecidable() bool {
	return p.IfNoneMatch.Present || !p.IfMatch.Present || p.Strict
}

// client returns the first strong ETag of If-Match, the version the client
// says its edit was made against ("" when none).
func (p Preconditions) client() string {
	if sent := p.IfMatch.StrongTags(); len(sent) > 0 {
		return sent[0]
	}
	return ""
}
