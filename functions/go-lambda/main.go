// go-lambda: a Lambda custom runtime (`provided`-style `bootstrap`) on Go's standard library
// only, talking to the Runtime API the way the published clients do: GET the next event, POST
// its response or error. It answers {"name": N} with a greeting; "fail" posts a function error;
// "sleep" outlives the deadline; "id" answers the request id it was given.
//
// It can also misbehave, for the tests of the init's bounds:
//   - GO_LAMBDA_START=init-error: posts init/error and exits, as a runtime whose handler
//     cannot be loaded does; GO_LAMBDA_START=no-next: never asks for an invocation;
//   - {"mode":"unknown"}: first answers an id it was never given, then answers the real one
//     with what the API said to that; {"mode":"twice"}: answers twice; {"mode":"big"}: answers
//     with 7 MB; {"mode":"last"}: answers with what the API said to the last misbehaving post
//     ({"status":S,"body":B}).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// What the API answered to a post.
type reply struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

func main() {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime"
	fmt.Printf("go-lambda: runtime API at %s, function %s\n", api, os.Getenv("AWS_LAMBDA_FUNCTION_NAME"))
	switch os.Getenv("GO_LAMBDA_START") {
	case "init-error":
		doc := `{"errorMessage":"cannot load the handler","errorType":"Runtime.ImportModuleError"}`
		r := post(api+"/init/error", doc)
		fmt.Printf("go-lambda: init/error answered %d %s\n", r.Status, r.Body)
		os.Exit(1)
	case "no-next":
		fmt.Println("go-lambda: never asking for an invocation")
		for {
			time.Sleep(time.Hour)
		}
	}
	var last reply
	for {
		resp, err := http.Get(api + "/invocation/next")
		if err != nil {
			fmt.Println("go-lambda: next:", err)
			os.Exit(1)
		}
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		event, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var in struct{ Name, Mode string }
		_ = json.Unmarshal(event, &in)
		answer := api + "/invocation/" + id + "/response"
		switch {
		case in.Mode == "unknown":
			last = post(api+"/invocation/00000000-0000-4000-8000-000000000000/response", `"stray"`)
			out, _ := json.Marshal(last)
			post(answer, string(out))
		case in.Mode == "twice":
			post(answer, `{"answer":1}`)
			last = post(answer, `{"answer":2}`)
		case in.Mode == "big":
			big := `"` + string(bytes.Repeat([]byte("x"), 7*1024*1024)) + `"`
			last = post(answer, big)
		case in.Mode == "last":
			out, _ := json.Marshal(last)
			post(answer, string(out))
		case in.Name == "fail":
			doc := `{"errorMessage":"asked to fail","errorType":"HandlerError"}`
			post(api+"/invocation/"+id+"/error", doc)
		case in.Name == "sleep":
			time.Sleep(time.Hour)
		case in.Name == "id":
			post(answer, fmt.Sprintf(`{"id":%q}`, id))
		default:
			out, _ := json.Marshal(map[string]string{"message": "Hello, " + in.Name + "!"})
			post(answer, string(out))
		}
	}
}

// post sends body as JSON; what the API answered (status 0 when it could not be asked).
func post(url, body string) reply {
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		fmt.Println("go-lambda: post:", err)
		return reply{Body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	return reply{Status: resp.StatusCode, Body: string(b)}
}
