// @NAME@: a Go HTTP function, compiled ahead of time by `stratos build` into the image's only
// program besides stratos-init. Edit handle; the rest is the StratOS contract.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

func handle(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintln(w, "Hello, world! This is @NAME@ on StratOS.")
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	// Listen first, then tell stratos-init the function is ready.
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		log.Fatal(err)
	}
	if fd, err := strconv.Atoi(os.Getenv("STRATOS_NOTIFY_FD")); err == nil {
		f := os.NewFile(uintptr(fd), "stratos-notify")
		f.Write([]byte("READY=1\n"))
		f.Close()
	}
	log.Fatal(http.Serve(ln, http.HandlerFunc(handle)))
}
