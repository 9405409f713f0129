package incident

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an Error. The HTTP layer maps each kind to exactly one
// status code, in one place.
type Kind int

// The error kinds.
const (
	// Internal is a bug or an unexpected failure; it is the only kind logged
	// by the HTTP error handler.
	Internal Kind = iota
	// Invalid is input that can never be accepted as it is.
	Invalid
	// NotFound is a missing resource.
	NotFound
	// Conflict is a request that clashes with the current state.
	Conflict
	// Unavailable is a temporary failure: the same request may succeed later.
	Unavailable
	// Unauthorized is a request with bad or missing credentials.
	Unauthorized
	// TooLarge is a request body over the configured limit.
	TooLarge
)

// String returns the kind's name, as used in JSON error bodies and metrics.
func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case NotFound:
		return "not_found"
	case Conflict:
		return "conflict"
	case Unavailable:
		return "unavailable"
	case Unauthorized:
		return "unauthorized"
	case TooLarge:
		return "too_large"
	default:
		return "internal"
	}
}

// Error is the one error type that crosses package boundaries with a
// classification attached.
type Error struct {
	Kind Kind
	// Code is a short machine-readable reason (e.g. "malformed_json"), used in
	// JSON error bodies and metric labels; it may be empty.
	Code string
	Msg  string
	Err  error
}

// Errorf returns an *Error of the given kind.
func Errorf(kind Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// Error implements error.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the wrapped cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of the first *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Detail is err's text with the causes that the *Error values in its chain
// keep out of their message, for a log line: Error shows only Msg, which is
// what an HTTP answer may say, while a log line must say why ("storage
// cannot commit: begin" is followed by the driver's "database or disk is
// full" or "connection refused"). The causes are the storage driver's and
// responder's own errors, which hold no secrets (pgx's connection errors
// name the host, user and database, never the password).
func Detail(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	var e *Error
	if !errors.As(err, &e) || e.Err == nil {
		return s
	}
	cause := Detail(e.Err)
	switch {
	case cause == "" || strings.Contains(s, cause):
		return s // the message says it already (Errorf's do)
	case e.Msg != "" && strings.Contains(s, e.Msg):
		return strings.Replace(s, e.Msg, e.Msg+": "+cause, 1)
	default:
		return s + ": " + cause
	}
}
