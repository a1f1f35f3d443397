package handlers_test

import (
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/patchd/patchd/handlers"
)

// TestOpenRoutesDocumented derives the routes served without a token from
// the router itself: every registered route (and HEAD of every GET route)
// is requested without a token from a server with tokens, and those not
// answered 401 are the open ones. They must be exactly the routes API.md's
// "Open routes" lists, and README's Guarantees must name each of them; a
// CORS preflight must be open on every route.
func TestOpenRoutesDocumented(t *testing.T) {
	var routes []*echo.Route
	s := startServerWith(t, nil, func(_ *handlers.Handler, e *echo.Echo) { routes = e.Routes() }, withTokens(t), withCORS)
	concrete := strings.NewReplacer(":c", "c", ":id", "x", "/ui/client/:file", "/ui/client/patchd.js", "/ui/:file", "/ui/app.js")
	var open []string
	for _, r := range routes {
		methods := []string{r.Method}
		if r.Method == http.MethodGet {
			methods = append(methods, http.MethodHead)
		}
		path := concrete.Replace(r.Path)
		for _, m := range methods {
			if res := s.do(t, m, path, nil, ""); res.status != http.StatusUnauthorized {
				open = append(open, m+" "+strings.NewReplacer(":file", "{file}").Replace(r.Path))
			}
		}
		pre := s.do(t, http.MethodOptions, path, hdr{"Origin", testOrigin, "Access-Control-Request-Method", http.MethodGet}, "")
		if pre.status == http.StatusUnauthorized {
			t.Errorf("a CORS preflight of %s needs a token", r.Path)
		}
	}
	slices.Sort(open)
	open = slices.Compact(open)

	api, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(api), "- **Open routes.**")
	if !ok {
		t.Fatal(`API.md has no "Open routes" entry`)
	}
	section, _, _ = strings.Cut(section, "\n- **")
	var documented []string
	for _, m := range regexp.MustCompile("`(GET|HEAD|PUT|POST|PATCH|DELETE) (/[^`]*)`").FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1]+" "+m[2])
		if m[1] == http.MethodGet {
			documented = append(documented, "HEAD "+m[2]) // HEAD goes where GET goes
		}
	}
	slices.Sort(documented)
	t.Logf("open routes: %v", open)
	if !slices.Equal(open, documented) {
		t.Fatalf("served without a token: %v\nAPI.md's open routes: %v", open, documented)
	}

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| With `--tokens`") {
			row = line
		}
	}
	for _, d := range documented {
		if strings.HasPrefix(d, "GET ") && !strings.Contains(row, "`"+d+"`") {
			t.Errorf("README's Guarantees row on tokens does not name %s:\n%s", d, row)
		}
	}
}
