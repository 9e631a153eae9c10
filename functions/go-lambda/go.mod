module example.com/go-lambda

go 1.19
