package store

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// DefaultDSN is where the embedded default keeps its data: a SQLite file
// under ./data relative to the working directory.
const DefaultDSN = "sqlite://data/responder.db"

// Config is the `storage` section.
type Config struct {
	// DSN is sqlite://PATH (relative paths are resolved against the config
	// file's directory) or postgres://user@host/db.
	DSN string `yaml:"dsn,omitempty"`
	// Queue tunes the durable work queue.
	Queue QueueConfig `yaml:"queue,omitempty"`
	// Retention, when not zero, is how long resolved incidents (with
	// everything recorded for them), duplicates, finished jobs and recorded
	// deployments are kept after they ended (see Store.Prune). Zero keeps
	// everything.
	Retention model.Duration `yaml:"retention,omitempty"`
}

// MinRetention is the shortest storage.retention: well beyond the 5 days
// for which Alertmanager's notification log remembers what it sent by
// default, after which it does not redeliver.
const MinRetention = 7 * 24 * time.Hour

// QueueConfig tunes the work queue shared by every pipeline step.
type QueueConfig struct {
	// Workers is how many jobs this replica runs at once.
	Workers int `yaml:"workers,omitempty"`
	// MaxAttempts is how many times a job is tried before it is parked.
	MaxAttempts int `yaml:"max_attempts,omitempty"`
	// MinBackoff and MaxBackoff bound the exponential backoff between attempts.
	MinBackoff time.Duration `yaml:"min_backoff,omitempty"`
	MaxBackoff time.Duration `yaml:"max_backoff,omitempty"`
	// Lease is how long a claimed job stays with its worker before another
	// worker (or replica) may take it over.
	Lease time.Duration `yaml:"lease,omitempty"`
	// PollInterval is how often idle workers look for due jobs that nobody
	// announced (retries, other replicas' work, expired leases).
	PollInterval time.Duration `yaml:"poll_interval,omitempty"`
}

// DefaultQueueConfig is used for every zero field of QueueConfig.
var DefaultQueueConfig = QueueConfig{
	// Jobs mostly wait on Slack, PagerDuty and the per-channel pacer, not on
	// the CPU: with 4 workers, 20 channels pacing at 1/s kept them all asleep.
	Workers:      16,
	MaxAttempts:  10,
	MinBackoff:   time.Second,
	MaxBackoff:   5 * time.Minute,
	Lease:        time.Minute,
	PollInterval: time.Second,
}

// UnmarshalYAML implements yaml.Unmarshaler: defaults, decode, validate.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = Config{}
	type plain Config
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	c.SetDefaults()
	return c.Validate()
}

// SetDefaults fills every zero field.
func (c *Config) SetDefaults() {
	if c.DSN == "" {
		c.DSN = DefaultDSN
	}
	q, d := &c.Queue, DefaultQueueConfig
	if q.Workers == 0 {
		q.Workers = d.Workers
	}
	if q.MaxAttempts == 0 {
		q.MaxAttempts = d.MaxAttempts
	}
	if q.MinBackoff == 0 {
		q.MinBackoff = d.MinBackoff
	}
	if q.MaxBackoff == 0 {
		q.MaxBackoff = d.MaxBackoff
	}
	if q.Lease == 0 {
		q.Lease = d.Lease
	}
	if q.PollInterval == 0 {
		q.PollInterval = d.PollInterval
	}
}

// Validate checks the section on its own.
func (c *Config) Validate() error {
	if _, _, err := ParseDSN(c.DSN); err != nil {
		return err
	}
	q := c.Queue
	switch {
	case q.Workers < 1:
		return errors.New("queue.workers must be at least 1")
	case q.MaxAttempts < 1:
		return errors.New("queue.max_attempts must be at least 1")
	case q.MinBackoff <= 0 || q.MaxBackoff < q.MinBackoff:
		return errors.New("queue.min_backoff must be positive and not above queue.max_backoff")
	case q.Lease < time.Second:
		return errors.New("queue.lease must be at least 1s")
	case q.PollInterval <= 0:
		return errors.New("queue.poll_interval must be positive")
	case c.Retention < 0 || (c.Retention > 0 && time.Duration(c.Retention) < MinRetention):
		return errors.New("retention must be 0 (keep everything) or at least 7d")
	}
	return nil
}

// ParseDSN splits a DSN into its driver ("sqlite" or "postgres") and the
// driver's own connection string (a file path for SQLite). Errors never
// include the DSN itself, which may hold a password.
func ParseDSN(dsn string) (driver, rest string, err error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite://"):
		path := strings.TrimPrefix(dsn, "sqlite://")
		if path == "" {
			return "", "", errors.New("dsn: sqlite:// needs a file path")
		}
		return "sqlite", path, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		if _, err := url.Parse(dsn); err != nil {
			return "", "", errors.New("dsn: postgres URL does not parse")
		}
		return "postgres", dsn, nil
	default:
		// A libpq key/value string ("host=db password=...") has no "://",
		// and what precedes one may be anything: the scheme is quoted only
		// when it plainly is one.
		scheme, _, found := strings.Cut(dsn, "://")
		if !found || !plainScheme(scheme) {
			return "", "", errors.New("dsn: no URL scheme (want sqlite://PATH or postgres://...; key/value connection strings are not supported)")
		}
		return "", "", fmt.Errorf("dsn: unsupported scheme %q (want sqlite:// or postgres://)", scheme)
	}
}

// SQLiteFileName reports whether the path of a sqlite:// DSN names a file:
// not an in-memory database (":memory:") or a SQLite URI ("file:..."),
// which are passed to SQLite as they are.
func SQLiteFileName(path string) bool {
	return !strings.HasPrefix(path, ":memory:") && !strings.HasPrefix(path, "file:")
}

// maxSchemeLen bounds the scheme an error may quote.
const maxSchemeLen = 20

// plainScheme reports whether s is short and shaped like a URL scheme
// (RFC 3986: a letter, then letters, digits, '+', '-' or '.'), so that it
// can be quoted in an error without quoting a credential.
func plainScheme(s string) bool {
	if s == "" || len(s) > maxSchemeLen {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}
