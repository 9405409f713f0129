// Command responder turns Prometheus Alertmanager notifications into
// incident response. See README.md.
package main

import (
	"os"
	_ "time/tzdata" // time intervals name zones; a minimal image may lack /usr/share/zoneinfo.
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
