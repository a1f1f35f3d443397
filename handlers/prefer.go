package handlers

import (
	"net/http"
	"strings"
)

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
			name, value, _ := strings.Cut(strings.ReplaceAll(strings.TrimSpace(tok), " ", ""), "=")
			// RFC 7240: a value may be a quoted-string (return="minimal").
			if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			switch strings.ToLower(name + "=" + value) {
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
