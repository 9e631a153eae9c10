// go-fn: an HTTP function on the standard library only, compiled ahead of time by
// `stratos build` into one static binary: the image is the kernel, stratos-init and this.
//
// Readiness: once listening it writes READY=1 to the descriptor named by $STRATOS_NOTIFY_FD
// (the stratos-init notify protocol), so runtime_ready marks the moment it can answer.
//
// Snapshots: every clone restored from one snapshot starts with the same memory. GET /id
// answers a fresh identifier from crypto/rand (getrandom(2), the kernel's generator, which
// stratos-init reseeds with the host's entropy on every restore). What the process holds
// itself is its own to reseed: the profile asks the init to send SIGUSR1 after every restore
// (`on-restore`), and the function reseeds math/rand, which Go 1.19 seeds with 1.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	mrand "math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func hello(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "world"
	}
	fmt.Fprintf(w, "Hello, %s! This is StratOS on Go.\n", name)
}

func id(w http.ResponseWriter, r *http.Request) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, hex.EncodeToString(b))
}

// spawn tries to start a process, which the seccomp baseline refuses (a function has no
// business forking); the function reports it and keeps serving.
func spawn(w http.ResponseWriter, r *http.Request) {
	err := exec.Command("/srv/fn/bootstrap", "-version").Run()
	if errors.Is(err, syscall.EPERM) {
		fmt.Println("go-fn: starting a process was refused: EPERM")
		fmt.Fprintln(w, "spawn refused: EPERM")
		return
	}
	fmt.Fprintf(w, "spawn: %v\n", err)
}

func main() {
	mrand.Seed(time.Now().UnixNano())
	restored := make(chan os.Signal, 1)
	signal.Notify(restored, syscall.SIGUSR1)
	go func() {
		for range restored {
			mrand.Seed(time.Now().UnixNano())
			fmt.Println("go-fn: restored from a snapshot; math/rand reseeded")
		}
	}()
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("go-fn: listening on %s\n", port)
	// Ready: tell stratos-init (five lines any Go function can copy).
	if fd, err := strconv.Atoi(os.Getenv("STRATOS_NOTIFY_FD")); err == nil {
		f := os.NewFile(uintptr(fd), "stratos-notify")
		f.Write([]byte("READY=1\n"))
		f.Close()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", hello)
	mux.HandleFunc("/id", id)
	mux.HandleFunc("/spawn", spawn)
	log.Fatal(http.Serve(ln, mux))
}
