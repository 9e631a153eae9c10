// go-lambda: a Lambda custom runtime (`provided`-style `bootstrap`) on Go's standard library
// only, talking to the Runtime API the way the published clients do: GET the next event, POST
// its response or error. It answers {"name": N} with a greeting; "fail" posts a function error;
// "sleep" outlives the deadline; "id" answers the request id it was given.
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

func main() {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime"
	fmt.Printf("go-lambda: runtime API at %s, function %s\n", api, os.Getenv("AWS_LAMBDA_FUNCTION_NAME"))
	for {
		resp, err := http.Get(api + "/invocation/next")
		if err != nil {
			fmt.Println("go-lambda: next:", err)
			os.Exit(1)
		}
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		event, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var in struct{ Name string }
		_ = json.Unmarshal(event, &in)
		switch in.Name {
		case "fail":
			doc := `{"errorMessage":"asked to fail","errorType":"HandlerError"}`
			post(api+"/invocation/"+id+"/error", doc)
		case "sleep":
			time.Sleep(time.Hour)
		case "id":
			post(api+"/invocation/"+id+"/response", fmt.Sprintf(`{"id":%q}`, id))
		default:
			out, _ := json.Marshal(map[string]string{"message": "Hello, " + in.Name + "!"})
			post(api+"/invocation/"+id+"/response", string(out))
		}
	}
}

func post(url, body string) {
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		fmt.Println("go-lambda: post:", err)
		return
	}
	resp.Body.Close()
}
