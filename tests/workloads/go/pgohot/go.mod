module example.com/pgohot

go 1.21
