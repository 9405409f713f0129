// Package routing decides where an incident is sent. It owns the
// Alertmanager-style route tree, the receivers with their Slack and PagerDuty
// configurations, and the named time intervals that mute or activate routes,
// together with the YAML types that describe them.
package routing
