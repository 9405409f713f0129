// Package deploys is the context source for the deployments recorded
// through POST /api/v1/deployments (by CI pipelines, or `responder deploy
// record`).
package deploys

import (
	"context"
	"time"

	"github.com/responder/responder/internal/incident"
)

// LookupFunc returns the recorded deployments of a service since a time,
// newest first, at most limit.
type LookupFunc func(ctx context.Context, service string, since time.Time, limit int) ([]incident.Deployment, error)

// Source looks up the deployments of the incident's service.
type Source struct {
	lookup        LookupFunc
	serviceLabels []string
	lookback      time.Duration
	limit         int
	now           func() time.Time
}

// New returns the source; serviceLabels name the service, in order.
func New(lookup LookupFunc, serviceLabels []string, lookback time.Duration, limit int, now func() time.Time) *Source {
	if now == nil {
		now = time.Now
	}
	return &Source{lookup: lookup, serviceLabels: serviceLabels, lookback: lookback, limit: limit, now: now}
}

// Name implements gather.Source.
func (s *Source) Name() string { return "deployments" }

// Kind implements gather.Source.
func (s *Source) Kind() string { return incident.ContextDeployments }

// Service returns the incident's service: the first of labels that its
// group or common labels carry.
func Service(inc *incident.Incident, labels []string) string {
	for _, l := range labels {
		if v := inc.GroupLabels[l]; v != "" {
			return v
		}
		if v := inc.CommonLabels[l]; v != "" {
			return v
		}
	}
	return ""
}

// Gather implements gather.Source.
func (s *Source) Gather(ctx context.Context, inc *incident.Incident) (incident.Section, error) {
	svc := Service(inc, s.serviceLabels)
	if svc == "" {
		return incident.Section{}, nil
	}
	ds, err := s.lookup(ctx, svc, s.now().Add(-s.lookback), s.limit)
	if err != nil {
		return incident.Section{}, err
	}
	return incident.Section{Deployments: ds}, nil
}
