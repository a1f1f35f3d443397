package handlers

import (
	"net/http"
	"strings"
)

// entityTag is one parsed entity-tag (RFC 9110 section 8.8.3).
type entityTag struct {
	weak   bool
	opaque string // with its double quotes
}

// tagList is a parsed If-Match or If-None-Match field.
type tagList struct {
	present bool // the field was sent
	any     bool // "*"
	tags    []entityTag
}

// parseTagList parses every line of a conditional header field. It returns
// an error wrapping ErrInvalidRequest when the syntax is wrong.
func parseTagList(h http.Header, name string) (tagList, error) {
	lines := h.Values(name)
	if len(lines) == 0 {
		return tagList{}, nil
	}
	l := tagList{present: true}
	for _, line := range lines {
		s := line
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				if l.any || len(l.tags) > 0 || strings.Trim(s[1:], " \t") != "" || len(lines) > 1 {
					return tagList{}, fail(ErrInvalidRequest, name+": \"*\" must stand alone")
				}
				l.any = true
				break
			}
			var t entityTag
			if strings.HasPrefix(s, "W/") {
				t.weak = true
				s = s[2:]
			}
			if s == "" || s[0] != '"' {
				return tagList{}, fail(ErrInvalidRequest, name+": an entity-tag must be a double-quoted string, like \"abc\"")
			}
			end := 1
			for end < len(s) && s[end] != '"' {
				c := s[end]
				if c < 0x21 || c == 0x7f {
					return tagList{}, fail(ErrInvalidRequest, name+": invalid character in entity-tag")
				}
				end++
			}
			if end == len(s) {
				return tagList{}, fail(ErrInvalidRequest, name+": unterminated entity-tag")
			}
			t.opaque = s[:end+1]
			l.tags = append(l.tags, t)
			s = strings.TrimLeft(s[end+1:], " \t")
			if s != "" && s[0] != ',' {
				return tagList{}, fail(ErrInvalidRequest, name+": entity-tags must be separated by commas")
			}
		}
	}
	if !l.any && len(l.tags) == 0 {
		return tagList{}, fail(ErrInvalidRequest, name+": empty list")
	}
	return l, nil
}

// matchStrong reports whether the list matches etag by strong comparison
// (If-Match): "*" matches any existing representation, a weak tag never.
func (l tagList) matchStrong(etag string) bool {
	if l.any {
		return true
	}
	for _, t := range l.tags {
		if !t.weak && t.opaque == etag {
			return true
		}
	}
	return false
}

// matchWeak reports whether the list matches etag by weak comparison
// (If-None-Match).
func (l tagList) matchWeak(etag string) bool {
	if l.any {
		return true
	}
	for _, t := range l.tags {
		if t.opaque == etag {
			return true
		}
	}
	return false
}

// strongTags returns the strong tags of the list, for base resolution.
func (l tagList) strongTags() []string {
	var out []string
	for _, t := range l.tags {
		if !t.weak {
			out = append(out, t.opaque)
		}
	}
	return out
}

// preferences are the tokens of the Prefer header (RFC 7240) that patchd
// honours.
type preferences struct {
	minimal bool // return=minimal
	strict  bool // handling=strict
}

func parsePrefer(h http.Header) preferences {
	var p preferences
	for _, line := range h.Values("Prefer") {
		for _, pref := range strings.Split(line, ",") {
			tok, _, _ := strings.Cut(pref, ";")
			switch strings.ToLower(strings.ReplaceAll(strings.TrimSpace(tok), " ", "")) {
			case "return=minimal":
				p.minimal = true
			case "handling=strict":
				p.strict = true
			}
		}
	}
	return p
}

// applied returns the Preference-Applied value for the preferences honoured.
func (p preferences) applied() string {
	var out []string
	if p.minimal {
		out = append(out, "return=minimal")
	}
	if p.strict {
		out = append(out, "handling=strict")
	}
	return strings.Join(out, ", ")
}
