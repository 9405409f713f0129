// Package incident is responder's domain leaf: the Alertmanager message,
// incidents and their alert state changes, work-queue jobs, the error kinds,
// and the Pipeline that drives queued work. It imports no other internal
// package.
package incident
