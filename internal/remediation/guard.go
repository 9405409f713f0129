package remediation

import (
	"errors"
	"fmt"
	"os"
	"slices"
)

// The guards, in the order they are checked. The first five are checked
// here, on the alert alone; the stateful ones (pause, storm, cooldown,
// budget, lock, concurrency) by storage, in the transaction that records
// the run, so that replicas cannot race past them.
const (
	GuardEnabled     = "enabled"
	GuardOptIn       = "opt_in"
	GuardMatch       = "match"
	GuardParams      = "params"
	GuardKillSwitch  = "kill_switch"
	GuardPaused      = "paused"
	GuardStorm       = "storm"
	GuardCooldown    = "cooldown"
	GuardBudget      = "max_runs"
	GuardLock        = "lock"
	GuardConcurrency = "max_concurrent"
	GuardDryRun      = "dry_run"
	GuardApproval    = "approval"
)

// Selection is what the stateless guards decided for an alert's labels.
type Selection struct {
	// OptedIn reports whether the alert carries the opt-in label: only
	// then is the decision worth recording.
	OptedIn bool
	// Runbook is the first runbook (in file name order) whose matchers
	// all match; nil when none does.
	Runbook *Runbook
	// Params are the validated parameters and Target the runbook's target.
	Params map[string]string
	Target string
	// Guard names the guard that refused, with its Reason; both are empty
	// when every stateless guard passed.
	Guard  string
	Reason string
	// KillSwitchErr is why the kill switch file could not be checked, when
	// it could not (the kill switch guard then refused), for the caller to
	// log: the reason reaches one incident's audit trail, and whoever runs
	// responder must learn from the log that the switch is stuck engaged.
	KillSwitchErr error
	// DryRun is set when the run would only be planned: remediation.dry_run
	// or the runbook's own dry_run.
	DryRun bool
}

// Refused reports whether a guard refused.
func (s Selection) Refused() bool { return s.Guard != "" }

// Select checks the stateless guards in order: remediation enabled, the
// opt-in label, a matching runbook, its parameters (and the namespaces its
// kubernetes steps render to), and the kill switch file.
func Select(cfg Config, set *Set, lset map[string]string) Selection {
	var sel Selection
	sel.OptedIn = lset[cfg.OptInLabel] == cfg.OptInValue
	if !cfg.Enabled {
		sel.Guard, sel.Reason = GuardEnabled, "remediation is disabled (remediation.enabled: false)"
		return sel
	}
	if !sel.OptedIn {
		sel.Guard, sel.Reason = GuardOptIn, fmt.Sprintf("the alert does not carry %s=%q", cfg.OptInLabel, cfg.OptInValue)
		return sel
	}
	if set != nil {
		for _, rb := range set.Runbooks {
			if rb.Matches(lset) {
				sel.Runbook = rb
				break
			}
		}
	}
	if sel.Runbook == nil {
		sel.Guard, sel.Reason = GuardMatch, "no runbook matches the alert's labels"
		return sel
	}
	params, err := sel.Runbook.ResolveParams(lset)
	if err != nil {
		sel.Guard, sel.Reason = GuardParams, "refused before any step: "+err.Error()
		return sel
	}
	sel.Params, sel.Target = params, sel.Runbook.Target(params)
	if err := sel.Runbook.checkNamespaces(params, cfg.AllowedNamespaces); err != nil {
		sel.Guard, sel.Reason = GuardParams, "refused before any step: "+err.Error()
		return sel
	}
	if on, why, err := KillSwitchOn(cfg); on {
		sel.Guard, sel.Reason, sel.KillSwitchErr = GuardKillSwitch, why, err
		return sel
	}
	sel.DryRun = cfg.DryRun || sel.Runbook.DryRun
	return sel
}

// checkNamespaces renders the namespace of every kubernetes step and checks
// it against allowed (remediation.allowed_namespaces; empty allows all). The
// executor checks again before each call, but a run refused there has
// already run its earlier steps: a label that names a namespace the
// runbook's pattern allows and the configuration does not must stop the run
// before its first step.
func (rb *Runbook) checkNamespaces(params map[string]string, allowed []string) error {
	if len(allowed) == 0 {
		return nil
	}
	for i := range rb.Steps {
		k := rb.Steps[i].Kubernetes
		if k == nil {
			continue
		}
		ns, err := render(k.Namespace, params, nil)
		if err != nil {
			return fmt.Errorf("step %s: %w", rb.Steps[i].Name, err)
		}
		if err := namespaceAllowed(allowed, ns); err != nil {
			return fmt.Errorf("step %s: %w", rb.Steps[i].Name, err)
		}
	}
	return nil
}

// namespaceAllowed refuses a namespace outside allowed
// (remediation.allowed_namespaces; empty allows all).
func namespaceAllowed(allowed []string, ns string) error {
	if len(allowed) > 0 && !slices.Contains(allowed, ns) {
		return fmt.Errorf("namespace %s is not in remediation.allowed_namespaces", SafeQuote(ns))
	}
	return nil
}

// KillSwitchOn reports whether the kill switch is engaged, and why.
//
// Anything at the file's path engages it: a file, a directory, a symbolic
// link, dangling or not. The path is checked with lstat, never followed: a
// Kubernetes ConfigMap or Secret mount is a symbolic link, and so is the
// switch an operator makes with ln -s; a stat would take one that dangles
// (its target not there yet, or gone) for no switch at all. A path that
// cannot be checked (permission denied, an I/O error, a component that is
// not a directory) engages it too, and err says why, for the caller to
// log: when in doubt, do nothing. Only "does not exist" disengages it.
func KillSwitchOn(cfg Config) (on bool, why string, err error) {
	f := cfg.KillSwitchFile
	if f == "" {
		return false, "", nil
	}
	fi, err := os.Lstat(f)
	switch {
	case err == nil:
		return true, "the kill switch file " + f + " exists" + killSwitchKind(f, fi) + ": remediation is stopped", nil
	case errors.Is(err, os.ErrNotExist):
		return false, "", nil
	}
	// The path is in the reason already: only the cause is added.
	cause := err
	var pe *os.PathError
	if errors.As(err, &pe) {
		cause = pe.Err
	}
	return true, "the kill switch file " + f + " cannot be checked (" + cause.Error() + "), so remediation is stopped", err
}

// killSwitchKind says what is at the kill switch's path when it is not a
// regular file, so that a switch nobody meant to set (a leftover directory,
// a link whose target is gone) is recognised from the reason.
func killSwitchKind(f string, fi os.FileInfo) string {
	switch m := fi.Mode(); {
	case m&os.ModeSymlink != 0:
		if _, err := os.Stat(f); err != nil {
			return " (a symbolic link whose target cannot be reached)"
		}
		return " (a symbolic link)"
	case m.IsDir():
		return " (a directory)"
	case !m.IsRegular():
		return " (not a regular file)"
	}
	return ""
}
