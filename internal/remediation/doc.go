// Package remediation runs runbooks for alerts that opt in: it parses
// runbooks into typed, whitelisted steps, guards every run (opt-in label,
// dry-run, kill switch, concurrency, storms, approvals) and keeps an audit
// trail of every step.
package remediation
