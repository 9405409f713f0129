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
	if on, why := KillSwitchOn(cfg); on {
		sel.Guard, sel.Reason = GuardKillSwitch, why
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
		if !slices.Contains(allowed, ns) {
			return fmt.Errorf("step %s: namespace %s is not in remediation.allowed_namespaces", rb.Steps[i].Name, SafeQuote(ns))
		}
	}
	return nil
}

// KillSwitchOn reports whether the kill switch file exists. A file that
// cannot be checked counts as present: when in doubt, do nothing.
func KillSwitchOn(cfg Config) (bool, string) {
	if cfg.KillSwitchFile == "" {
		return false, ""
	}
	_, err := os.Stat(cfg.KillSwitchFile)
	switch {
	case err == nil:
		return true, "the kill switch file " + cfg.KillSwitchFile + " exists: remediation is stopped"
	case errors.Is(err, os.ErrNotExist):
		return false, ""
	}
	return true, "the kill switch file " + cfg.KillSwitchFile + " cannot be checked, so remediation is stopped: " + err.Error()
}
