// Package web holds patchd's browser side: the JavaScript client library
// (client/, published to npm as it is) and the collaborative form demo
// (demo/). The binary embeds both and serves them when the UI is on, so the
// demo needs no build step and no npm.
package web

import (
	"embed"
	"io/fs"
)

// files is read-only: embed.FS cannot be changed after compilation.
//
//go:embed client/*.js client/*.d.ts demo
var files embed.FS

// Demo returns the demo's files: the form (index.html, app.js, history.js),
// the list page (list.html, list.js), the sign-in of a server with tokens
// (token.js), style.css and the pages' icon (icon.svg).
func Demo() fs.FS { return sub("demo") }

// Client returns the JavaScript client's ES modules and type declarations.
func Client() fs.FS { return sub("client") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		// fs.Sub fails only on an invalid path, and dir is a constant.
		panic("web: " + err.Error())
	}
	return f
}
