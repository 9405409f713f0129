package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/responder/responder/internal/app"
	"github.com/responder/responder/internal/remediation"
)

// runbooksCommands are `runbooks check` and `runbooks simulate`.
type runbooksCommands struct {
	check, simulate *kingpin.CmdClause
	dir             *string
	configFile      *string
	at              *string
	labels          *[]string
}

func addRunbooksCommands(a *kingpin.Application) *runbooksCommands {
	rb := a.Command("runbooks", "Check runbooks and simulate remediation.")
	c := &runbooksCommands{}
	c.check = rb.Command("check", "Validate every runbook in a directory and exit 0, or 1 with one line per problem.")
	c.dir = c.check.Arg("dir", "Runbooks directory.").Required().String()
	c.simulate = rb.Command("simulate", "Print which runbook would run for an alert with these labels, its parameters and steps, and which guard would stop it.")
	c.configFile = c.simulate.Flag("config.file", "Configuration file; without it, the embedded default.").String()
	c.at = c.simulate.Flag("time", "The instant printed with the result (RFC 3339); default now. None of the guards simulate checks depends on it.").String()
	c.labels = c.simulate.Arg("labels", "Alert labels as label=value.").Strings()
	return c
}

// run runs the command if it is one of these; ok is false otherwise.
func (c *runbooksCommands) run(cmd string, stdout, stderr io.Writer) (code int, ok bool) {
	switch cmd {
	case c.check.FullCommand():
		return runRunbooksCheck(stdout, stderr, *c.dir), true
	case c.simulate.FullCommand():
		return runRunbooksSimulate(stdout, stderr, *c.configFile, *c.at, *c.labels), true
	}
	return 0, false
}

func runRunbooksCheck(stdout, stderr io.Writer, dir string) int {
	set, err := remediation.LoadDir(dir, false)
	if err != nil {
		for _, line := range problems(err) {
			fmt.Fprintln(stderr, line)
		}
		return 1
	}
	for _, rb := range set.Runbooks {
		fmt.Fprintf(stdout, "%s: %s: SUCCESS (%d steps)\n", rb.File, rb.Name, len(rb.Steps))
	}
	if len(set.Runbooks) == 0 {
		fmt.Fprintf(stdout, "%s: no runbooks\n", dir)
	}
	return 0
}

func runRunbooksSimulate(stdout, stderr io.Writer, file, at string, labels []string) int {
	cfg, when, lset, code := alertArgs(stderr, file, at, labels)
	if code != 0 {
		return code
	}
	set, err := app.LoadRunbooks(cfg)
	if err != nil {
		for _, line := range problems(err) {
			fmt.Fprintln(stderr, line)
		}
		return 1
	}
	rc := cfg.Remediation
	sel := remediation.Select(rc, set, lset)
	fmt.Fprintf(stdout, "time: %s\n", when.Format(time.RFC3339))
	if sel.Runbook != nil {
		rb := sel.Runbook
		fmt.Fprintf(stdout, "runbook: %s (%s)\n", rb.Name, rb.File)
		if sel.Params != nil {
			fmt.Fprintln(stdout, "params:")
			for _, k := range slices.Sorted(maps.Keys(sel.Params)) {
				fmt.Fprintf(stdout, "  %s = %q\n", k, sel.Params[k])
			}
			fmt.Fprintf(stdout, "target: %s\n", sel.Target)
			if plan, err := rb.Plan(sel.Params, lset); err == nil {
				fmt.Fprintln(stdout, "steps:")
				for _, a := range plan {
					fmt.Fprintf(stdout, "  %d. %s (%s): %s\n", a.Index+1, a.Name, a.Kind, a.Describe())
				}
			}
			if q, err := rb.VerifyQuery(sel.Params, lset); err == nil && q != "" {
				fmt.Fprintf(stdout, "verify: %s within %s\n", q, time.Duration(rb.Verify.Within))
			}
		}
		g := rb.Guards
		fmt.Fprintf(stdout, "guards: cooldown %s, max_runs %d per %s, require_approval %t, continue_on_resolve %t\n",
			time.Duration(g.Cooldown), g.MaxRuns, time.Duration(g.Window), g.RequireApproval, g.ContinueOnResolve)
	} else {
		fmt.Fprintln(stdout, "runbook: none")
	}
	switch {
	case sel.Refused():
		fmt.Fprintf(stdout, "decision: refused by guard %s: %s\n", sel.Guard, sel.Reason)
	case sel.DryRun:
		fmt.Fprintln(stdout, "decision: dry run: the steps would be planned and audited, nothing executed")
	default:
		fmt.Fprintln(stdout, "decision: would run, unless a guard that depends on history stops it at run time")
	}
	if !sel.Refused() {
		fmt.Fprintf(stdout, "checked at run time: pause (POST /api/v1/remediation/pause), storm breaker (more than %d firing incidents), cooldown, max_runs, one run at a time per target, max_concurrent %d\n",
			rc.StormThreshold, rc.MaxConcurrent)
	}
	return 0
}
