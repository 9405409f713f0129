package remediation

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/common/model"
)

// Config is the `remediation` section. Its defaults are safe: remediation is
// enabled but in dry-run, so runbooks are planned, audited and reported and
// nothing executes until dry_run is set to false explicitly.
type Config struct {
	// Enabled is the global switch; false means nothing is ever planned or
	// executed.
	Enabled bool `yaml:"enabled"`
	// DryRun plans, audits and reports every run but executes no step.
	DryRun bool `yaml:"dry_run"`
	// OptInLabel and OptInValue are the label an alert must carry, with that
	// value, to be considered for remediation at all.
	OptInLabel string `yaml:"opt_in_label"`
	OptInValue string `yaml:"opt_in_value"`
	// RunbooksDir holds the runbooks (*.yaml, *.yml). A relative path is
	// resolved against the config file's directory.
	RunbooksDir string `yaml:"runbooks_dir"`
	// KillSwitchFile, when set, stops every execution while the file exists.
	// A relative path is resolved against the config file's directory.
	KillSwitchFile string `yaml:"kill_switch_file,omitempty"`
	// MaxConcurrent is how many runs may execute at once, in total.
	MaxConcurrent int `yaml:"max_concurrent"`
	// StormThreshold is how many incidents may be firing at once (all of
	// them, not only those that opted in) before remediation pauses: a
	// storm is a page for a human.
	StormThreshold int `yaml:"storm_threshold"`
	// AllowedNamespaces restricts kubernetes steps to these namespaces;
	// empty means the runbooks' own namespaces are trusted.
	AllowedNamespaces []string `yaml:"allowed_namespaces,omitempty"`
	// Approvers are the Slack user IDs allowed to approve a run that needs
	// approval.
	Approvers []string `yaml:"approvers,omitempty"`
	// ApprovalTimeout is how long an approval request stays open; an
	// unanswered one cancels its run.
	ApprovalTimeout model.Duration `yaml:"approval_timeout,omitempty"`
	// EscalationReceiver names a receiver with pagerduty_configs that is
	// paged when a run fails. Empty means the PagerDuty receivers the route
	// tree chooses for the incident, ignoring time intervals: a failed
	// remediation pages whatever the hour.
	EscalationReceiver string `yaml:"escalation_receiver,omitempty"`
	// KubeconfigFile is the kubeconfig for kubernetes steps; empty means
	// the in-cluster service account. A relative path is resolved against
	// the config file's directory.
	KubeconfigFile string `yaml:"kubeconfig_file,omitempty"`
}

// DefaultApprovalTimeout is how long an approval request stays open by
// default.
const DefaultApprovalTimeout = time.Hour

// DefaultConfig returns the defaults, used for an absent section and for
// every key a present section omits.
func DefaultConfig() Config {
	return Config{
		Enabled:         true,
		DryRun:          true,
		OptInLabel:      "auto_remediation",
		OptInValue:      "enabled",
		RunbooksDir:     "runbooks/",
		MaxConcurrent:   2,
		StormThreshold:  20,
		ApprovalTimeout: model.Duration(DefaultApprovalTimeout),
	}
}

var (
	// namespaceRE is a Kubernetes namespace name (an RFC 1123 label).
	namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// slackUserRE is a Slack user ID.
	slackUserRE = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)
)

// UnmarshalYAML implements yaml.Unmarshaler: defaults, decode, validate.
// The defaults are in place before decoding, so an explicit `enabled: false`
// or `dry_run: false` is honoured while an omitted key keeps its default.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultConfig()
	type plain Config
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	return c.Validate()
}

// Validate checks the section on its own.
func (c *Config) Validate() error {
	switch {
	case !model.LegacyValidation.IsValidLabelName(c.OptInLabel):
		return fmt.Errorf("opt_in_label: invalid label name %q", c.OptInLabel)
	case c.OptInValue == "":
		return errors.New("opt_in_value must not be empty")
	case c.RunbooksDir == "":
		return errors.New("runbooks_dir must not be empty")
	case c.MaxConcurrent < 1:
		return errors.New("max_concurrent must be at least 1")
	case c.StormThreshold < 1:
		return errors.New("storm_threshold must be at least 1")
	case c.ApprovalTimeout < 0:
		return errors.New("approval_timeout must not be negative")
	}
	if c.ApprovalTimeout == 0 {
		c.ApprovalTimeout = model.Duration(DefaultApprovalTimeout)
	}
	for i, ns := range c.AllowedNamespaces {
		if !namespaceRE.MatchString(ns) {
			return fmt.Errorf("allowed_namespaces[%d]: invalid namespace %q", i, ns)
		}
	}
	for i, u := range c.Approvers {
		if !slackUserRE.MatchString(u) {
			return fmt.Errorf("approvers[%d]: %q is not a Slack user ID (like U012AB3CD)", i, u)
		}
	}
	return nil
}
