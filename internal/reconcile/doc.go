// Package reconcile compares the incidents responder holds with the alerts
// Alertmanager holds (its API v2), to catch webhooks that never arrived and
// resolves that were lost. It reads Alertmanager's own routing tree (from
// GET /api/v2/status) to compute the group keys Alertmanager itself uses, so
// that an incident it opens is the one a late webhook applies to.
package reconcile
