module example.com/go-fn

go 1.19
