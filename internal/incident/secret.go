package incident

import "encoding/json"

// redacted is what a Secret prints as, wherever it is printed.
const redacted = "<secret>"

// Secret is a string that never prints: not in logs, errors, YAML or JSON.
// Use Value to read it where the secret is actually needed (an Authorization
// header, an API call), and nowhere else.
type Secret string

// Value returns the secret itself.
func (s Secret) Value() string { return string(s) }

// String implements fmt.Stringer so that %s and %v never leak the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer so that %#v never leaks the value.
func (s Secret) GoString() string { return s.String() }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }
