package webhook

import (
	"errors"

	"github.com/alecthomas/units"

	"github.com/responder/responder/internal/incident"
)

// DefaultMaxBodySize is the largest webhook body accepted when
// webhook.max_body_size is not set. Alertmanager's payloads are a few KB per
// alert; 4 MiB holds well over a thousand alerts.
const DefaultMaxBodySize = 4 * units.MiB

// Config is the `webhook` section: how senders authenticate and how large a
// body may be. Authorization and basic_auth are mutually exclusive, like in
// Alertmanager's http_config.
type Config struct {
	Authorization *Authorization   `yaml:"authorization,omitempty"`
	BasicAuth     *BasicAuth       `yaml:"basic_auth,omitempty"`
	MaxBodySize   units.Base2Bytes `yaml:"max_body_size,omitempty"`
}

// Authorization is `Authorization: <type> <credentials>`, Bearer by default.
type Authorization struct {
	Type            string          `yaml:"type,omitempty"`
	Credentials     incident.Secret `yaml:"credentials,omitempty"`
	CredentialsFile string          `yaml:"credentials_file,omitempty"`
}

// BasicAuth is HTTP basic authentication.
type BasicAuth struct {
	Username     string          `yaml:"username"`
	Password     incident.Secret `yaml:"password,omitempty"`
	PasswordFile string          `yaml:"password_file,omitempty"`
}

// UnmarshalYAML implements yaml.Unmarshaler: defaults, decode, validate.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = Config{}
	type plain Config
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	if c.MaxBodySize == 0 {
		c.MaxBodySize = DefaultMaxBodySize
	}
	return c.Validate()
}

// Validate checks the section on its own.
func (c *Config) Validate() error {
	if c.Authorization != nil && c.BasicAuth != nil {
		return errors.New("at most one of authorization and basic_auth may be configured")
	}
	if c.MaxBodySize < 0 {
		return errors.New("max_body_size must not be negative")
	}
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *Authorization) UnmarshalYAML(unmarshal func(any) error) error {
	*a = Authorization{Type: "Bearer"}
	type plain Authorization
	if err := unmarshal((*plain)(a)); err != nil {
		return err
	}
	if a.Credentials != "" && a.CredentialsFile != "" {
		return errors.New("authorization: at most one of credentials and credentials_file may be configured")
	}
	if a.Credentials == "" && a.CredentialsFile == "" {
		return errors.New("authorization: credentials or credentials_file is required")
	}
	if a.Type == "" {
		a.Type = "Bearer"
	}
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *BasicAuth) UnmarshalYAML(unmarshal func(any) error) error {
	*b = BasicAuth{}
	type plain BasicAuth
	if err := unmarshal((*plain)(b)); err != nil {
		return err
	}
	if b.Username == "" {
		return errors.New("basic_auth: username is required")
	}
	if b.Password != "" && b.PasswordFile != "" {
		return errors.New("basic_auth: at most one of password and password_file may be configured")
	}
	if b.Password == "" && b.PasswordFile == "" {
		return errors.New("basic_auth: password or password_file is required")
	}
	return nil
}

// Enabled reports whether any authentication is configured.
func (c Config) Enabled() bool { return c.Authorization != nil || c.BasicAuth != nil }
