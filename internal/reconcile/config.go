package reconcile

import (
	"errors"
	"slices"
	"time"
)

// Config is the `reconcile` section. Reconciliation runs only when it is
// enabled and global.alertmanager_url is set.
type Config struct {
	// Enabled turns reconciliation on (the default) or off.
	Enabled bool `yaml:"enabled"`
	// Interval is how often Alertmanager's alerts are read.
	Interval time.Duration `yaml:"interval"`
	// Grace is how long a difference must last before it is acted on: an
	// alert Alertmanager has but whose webhook has not come (Alertmanager
	// waits group_wait, and retries), or an alert responder holds as
	// firing that Alertmanager no longer has.
	Grace time.Duration `yaml:"grace"`
	// Receivers are the Alertmanager receivers that send to responder.
	// Empty means every receiver responder has received a notification
	// from.
	Receivers []string `yaml:"receivers,omitempty"`
}

// DefaultConfig returns the defaults: every minute, acting on differences
// that last five minutes (more than Alertmanager's default group_wait plus
// a group_interval).
func DefaultConfig() Config {
	return Config{Enabled: true, Interval: time.Minute, Grace: 5 * time.Minute}
}

// UnmarshalYAML implements yaml.Unmarshaler: defaults, decode, validate.
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
	if c.Interval <= 0 {
		return errors.New("interval must be positive")
	}
	if c.Grace <= 0 {
		// 0 would act on a difference the moment it is seen: an
		// Alertmanager that restarts holds no alerts until Prometheus sends
		// them again, and every firing incident would be resolved.
		return errors.New("grace must be positive (default 5m): an Alertmanager that restarts has no alerts until Prometheus sends them again, and a difference acted on at once would resolve every firing incident")
	}
	if slices.Contains(c.Receivers, "") {
		return errors.New("receivers: a receiver name must not be empty")
	}
	return nil
}
