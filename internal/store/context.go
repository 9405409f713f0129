package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/responder/responder/internal/incident"
)

// RecordDeployment stores a deployment and returns its ID.
func (s *Store) RecordDeployment(ctx context.Context, d incident.Deployment) (int64, error) {
	var id int64
	err := s.wQueryRow(ctx, `INSERT INTO deployments (service, environment, version, commit_sha, author, url, deployed_at, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		d.Service, d.Environment, d.Version, d.Commit, d.Author, d.URL, ns(d.DeployedAt), ns(s.opts.Now())).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("record deployment: %w", err)
	}
	return id, nil
}

// RecentDeployments returns the recorded deployments of a service at or
// after since, newest first, at most limit.
func (s *Store) RecentDeployments(ctx context.Context, service string, since time.Time, limit int) ([]incident.Deployment, error) {
	rows, err := s.rQuery(ctx, `SELECT id, service, environment, version, commit_sha, author, url, deployed_at
		FROM deployments WHERE service = ? AND deployed_at >= ? ORDER BY deployed_at DESC, id DESC LIMIT ?`, service, ns(since), clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("read deployments: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []incident.Deployment{}
	for rows.Next() {
		var (
			d  incident.Deployment
			at int64
		)
		if err := rows.Scan(&d.ID, &d.Service, &d.Environment, &d.Version, &d.Commit, &d.Author, &d.URL, &at); err != nil {
			return nil, fmt.Errorf("scan deployment: %w", err)
		}
		d.DeployedAt, d.Source = fromNS(at), "api"
		out = append(out, d)
	}
	return out, rows.Err()
}

// SaveContext stores an incident's gathered context, unless one is stored
// already (a concurrent gathering won). When it stored it, it queues a job
// of kind followUp (if not empty) in the same commit and reports true.
func (s *Store) SaveContext(ctx context.Context, incidentID int64, c *incident.Context, followUp string) (bool, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return false, fmt.Errorf("encode context: %w", err)
	}
	tx, err := s.begin(ctx, false)
	if err != nil {
		return false, fmt.Errorf("begin save context: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit.
	res, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO incident_context (incident_id, gathered_at, body) VALUES (?, ?, ?)
		ON CONFLICT (incident_id) DO NOTHING`), incidentID, ns(c.GatheredAt), string(body))
	if err != nil {
		return false, fmt.Errorf("save context of incident %d: %w", incidentID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("save context of incident %d: %w", incidentID, err)
	}
	if n == 0 {
		return false, nil
	}
	if followUp != "" {
		if err := s.enqueue(ctx, tx.Tx, followUp, incidentID, incidentID, nil); err != nil {
			return false, err
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit context of incident %d: %w", incidentID, err)
	}
	if followUp != "" {
		s.opts.OnCommit()
	}
	return true, nil
}

// IncidentContext returns an incident's stored context, or nil when none
// is stored yet.
func (s *Store) IncidentContext(ctx context.Context, incidentID int64) (*incident.Context, error) {
	var body string
	err := s.rQueryRow(ctx, `SELECT body FROM incident_context WHERE incident_id = ?`, incidentID).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read context of incident %d: %w", incidentID, err)
	}
	var c incident.Context
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		return nil, fmt.Errorf("decode context of incident %d: %w", incidentID, err)
	}
	return &c, nil
}

// ContextPost is how far an incident's context was posted to one delivery.
type ContextPost struct {
	DeliveryID int64
	Step       int
	Done       bool
}

// ContextPosts returns the progress of posting an incident's context, by
// delivery.
func (s *Store) ContextPosts(ctx context.Context, incidentID int64) (map[int64]ContextPost, error) {
	rows, err := s.rQuery(ctx, `SELECT delivery_id, step, done FROM context_posts WHERE incident_id = ?`, incidentID)
	if err != nil {
		return nil, fmt.Errorf("read context posts: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := map[int64]ContextPost{}
	for rows.Next() {
		var (
			p    ContextPost
			done int
		)
		if err := rows.Scan(&p.DeliveryID, &p.Step, &done); err != nil {
			return nil, fmt.Errorf("scan context post: %w", err)
		}
		p.Done = done != 0
		out[p.DeliveryID] = p
	}
	return out, rows.Err()
}

// SaveContextPost records the progress of posting an incident's context to
// one delivery.
func (s *Store) SaveContextPost(ctx context.Context, incidentID int64, p ContextPost) error {
	done := 0
	if p.Done {
		done = 1
	}
	_, err := s.wExec(ctx, `INSERT INTO context_posts (delivery_id, incident_id, step, done, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (delivery_id) DO UPDATE SET step = excluded.step, done = excluded.done, updated_at = excluded.updated_at`,
		p.DeliveryID, incidentID, p.Step, done, ns(s.opts.Now()))
	if err != nil {
		return fmt.Errorf("save context post of delivery %d: %w", p.DeliveryID, err)
	}
	return nil
}
