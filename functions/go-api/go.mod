module example.com/go-api

go 1.19

require example.com/greet v1.0.0
