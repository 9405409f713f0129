package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/responder/responder/internal/incident"
)

// Deployments records the deployments that CI pipelines report.
type Deployments interface {
	RecordDeployment(ctx context.Context, d incident.Deployment) (int64, error)
}

// DeploymentRequest is the body of POST /api/v1/deployments.
type DeploymentRequest struct {
	Service     string `json:"service"`
	Environment string `json:"environment"`
	Version     string `json:"version"`
	Commit      string `json:"commit"`
	Author      string `json:"author"`
	URL         string `json:"url"`
	// DeployedAt is RFC 3339; empty means now.
	DeployedAt string `json:"deployed_at"`
}

// deploymentResponse is the body of a 201.
type deploymentResponse struct {
	Status string `json:"status"`
	ID     int64  `json:"id"`
}

// maxDeploymentBody bounds a deployment request; the fields are short.
const maxDeploymentBody = 16 << 10

// maxFieldLen bounds each text field.
const maxFieldLen = 512

// maxErrorText bounds the decoder's message quoted in a 400.
const maxErrorText = 200

// oneLine reports whether v is one line of text: no control character but
// tab (C0, DEL and C1, which hold the line breaks CR, LF and NEL and the
// terminal escape), and no Unicode line or paragraph separator.
func oneLine(v string) bool {
	return !strings.ContainsFunc(v, func(r rune) bool {
		return (unicode.IsControl(r) && r != '\t') || r == '\u2028' || r == '\u2029'
	})
}

// handleRecordDeployment validates and stores a deployment.
func handleRecordDeployment(logger *slog.Logger, d Deployments, opts Options) echo.HandlerFunc {
	return func(c echo.Context) error {
		if d == nil {
			return incident.Errorf(incident.NotFound, "deployments are not recorded by this server")
		}
		if err := checkEncoding(c.Request(), ""); err != nil {
			return err
		}
		body, err := readBody(c.Request(), maxDeploymentBody, "the fixed limit of a deployment request")
		if err != nil {
			return err
		}
		dep, err := ParseDeployment(body, opts.Now())
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), opts.AcceptTimeout)
		defer cancel()
		id, err := d.RecordDeployment(ctx, dep)
		if err != nil {
			return notCommitted(logger, c, err)
		}
		return c.JSON(http.StatusCreated, deploymentResponse{Status: "success", ID: id})
	}
}

// ParseDeployment decodes and validates a deployment request: service is
// required, the body and every field are valid UTF-8, every field is one
// short line without control characters, url is http(s) and deployed_at is
// RFC 3339, not in the future and not before 1970 (now when absent).
func ParseDeployment(body []byte, now time.Time) (incident.Deployment, error) {
	invalid := func(msg string) error {
		return &incident.Error{Kind: incident.Invalid, Code: "invalid_deployment", Msg: msg}
	}
	// encoding/json would turn invalid bytes into U+FFFD and record
	// something the pipeline never sent.
	if !utf8.Valid(body) {
		return incident.Deployment{}, invalid("malformed deployment: not valid UTF-8")
	}
	var r DeploymentRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		// The decoder's message may quote an unknown field's name, as long
		// as the body allows.
		return incident.Deployment{}, invalid("malformed deployment: " + incident.Clip(err.Error(), maxErrorText))
	}
	// Only white space may follow the object. dec.More alone would let a
	// stray ']' or '}' through.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return incident.Deployment{}, invalid("malformed deployment: trailing data")
	}
	fields := map[string]string{
		"service": r.Service, "environment": r.Environment, "version": r.Version, "commit": r.Commit, "author": r.Author, "url": r.URL,
	}
	// The fields are valid UTF-8: the body is, and encoding/json decodes a
	// lone surrogate escape to U+FFFD.
	for name, v := range fields {
		if len(v) > maxFieldLen || !oneLine(v) {
			return incident.Deployment{}, invalid(name + ": must be one line of at most 512 bytes of text, without control characters")
		}
	}
	if strings.TrimSpace(r.Service) == "" {
		return incident.Deployment{}, invalid("service is required")
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return incident.Deployment{}, invalid("url: must be an absolute http or https URL")
		}
		if u.User != nil {
			return incident.Deployment{}, invalid("url: must not carry credentials")
		}
	}
	at := now
	if r.DeployedAt != "" {
		t, err := time.Parse(time.RFC3339, r.DeployedAt)
		if err != nil {
			return incident.Deployment{}, invalid("deployed_at: must be RFC 3339, like 2026-03-02T10:00:00Z")
		}
		if t.After(now.Add(5 * time.Minute)) {
			return incident.Deployment{}, invalid("deployed_at: must not be in the future")
		}
		// Storage keeps Unix nanoseconds, which wrap around before 1678: a
		// time in 1441 would come back as one in 2025.
		if t.Before(time.Unix(0, 0)) {
			return incident.Deployment{}, invalid("deployed_at: must not be before 1970")
		}
		at = t
	}
	return incident.Deployment{
		Service: strings.TrimSpace(r.Service), Environment: r.Environment, Version: r.Version, Commit: r.Commit,
		Author: r.Author, URL: r.URL, DeployedAt: at.UTC(), Source: "api",
	}, nil
}
