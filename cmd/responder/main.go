// Command responder turns Prometheus Alertmanager notifications into
// incident response. See README.md.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
