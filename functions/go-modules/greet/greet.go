// Package greet is go-api's one dependency: a module made here, served to the build from
// functions/go-proxy (a module proxy laid out on disk) and pinned by go-api's go.sum.
package greet

import "strings"

// Hello greets name, "world" when it is blank.
func Hello(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "world"
	}
	return "Hello, " + name + "!"
}
