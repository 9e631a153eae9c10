// go-api: go-fn's shape with one module dependency, example.com/greet, to show how a Go
// function's modules are pinned: go.sum holds each module's h1: hash, `stratos build` fetches
// exactly those (here from functions/go-proxy, named in the profile) into its cache, checks
// each against go.sum, and serves them to `go` offline; the SBOM lists the module.
package main

import (
	"encoding/json"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"

	"example.com/greet"
)

func main() {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	if fd, err := strconv.Atoi(os.Getenv("STRATOS_NOTIFY_FD")); err == nil {
		f := os.NewFile(uintptr(fd), "stratos-notify")
		f.Write([]byte("READY=1\n"))
		f.Close()
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"message": greet.Hello(r.URL.Query().Get("name"))})
	})
	log.Fatal(http.Serve(ln, nil))
}
