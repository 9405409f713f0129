package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/responder/responder/internal/app"
	"github.com/responder/responder/internal/config"
)

// runCheckConfig validates a configuration and every runbook it points to,
// as serve and a reload load them. It exits 1 with one line per problem on
// stderr, or 0: then a WARNING line on stderr for each thing that is valid
// but will fail where it runs now, such as kubernetes steps that execute
// with no kubeconfig outside a cluster (the same file is valid in one).
func runCheckConfig(stdout, stderr io.Writer, file string) int {
	name := file
	var err error
	cfg := config.Default()
	if file == "" {
		name = "embedded default"
	} else {
		cfg, err = config.LoadFile(file)
	}
	var warnings []string
	if err == nil {
		// The runbooks and the kubeconfig_file the config points to must
		// be valid too, and the context sources must build: every problem
		// of both in one run.
		remWarnings, remErr := app.CheckRemediation(cfg)
		ctxWarnings, ctxErr := app.CheckContext(cfg)
		warnings, err = append(remWarnings, ctxWarnings...), errors.Join(remErr, ctxErr)
	}
	if err != nil {
		// LoadFile already names the file on every line.
		for _, line := range problems(err) {
			fmt.Fprintln(stderr, line)
		}
		return 1
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "%s: WARNING: %s\n", name, w)
	}
	fmt.Fprintf(stdout, "%s: SUCCESS\n", name)
	return 0
}
