package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// deployCommand is `responder deploy record`: CI pipelines report a
// deployment to POST /api/v1/deployments.
type deployCommand struct {
	record                                                     *kingpin.CmdClause
	url                                                        *string
	service, environment, version, commit, author, link, at    *string
	bearerToken, bearerTokenFile, basicUser, basicPasswordFile *string
	timeout                                                    *time.Duration
}

func addDeployCommand(a *kingpin.Application) *deployCommand {
	deploy := a.Command("deploy", "Report deployments to responder.")
	rec := deploy.Command("record", "Record a deployment (from a CI pipeline), shown in the context of the service's next incidents.")
	return &deployCommand{
		record:            rec,
		url:               rec.Flag("url", "responder's base URL, e.g. http://responder:9096.").Envar("RESPONDER_URL").Required().String(),
		service:           rec.Flag("service", "The service deployed, as the alerts' service label names it.").Required().String(),
		environment:       rec.Flag("environment", "The environment, e.g. prod.").String(),
		version:           rec.Flag("version", "The version deployed.").String(),
		commit:            rec.Flag("commit", "The commit deployed.").String(),
		author:            rec.Flag("author", "Who deployed.").String(),
		link:              rec.Flag("link", "A link to the pipeline run or the release (the deployment's url).").String(),
		at:                rec.Flag("deployed-at", "When it was deployed (RFC 3339); default now.").String(),
		bearerToken:       rec.Flag("bearer-token", "Bearer token of the webhook authentication.").Envar("RESPONDER_BEARER_TOKEN").String(),
		bearerTokenFile:   rec.Flag("bearer-token-file", "File holding the bearer token.").String(),
		basicUser:         rec.Flag("basic-auth.username", "Basic authentication user name.").String(),
		basicPasswordFile: rec.Flag("basic-auth.password-file", "File holding the basic authentication password.").String(),
		timeout:           rec.Flag("timeout", "How long to wait for responder.").Default("10s").Duration(),
	}
}

// run posts the deployment; it returns the exit code: 0 recorded, 1
// refused or unreachable, 2 bad flags.
func (d *deployCommand) run(stdout, stderr io.Writer) int {
	body, err := json.Marshal(map[string]string{
		"service": *d.service, "environment": *d.environment, "version": *d.version, "commit": *d.commit,
		"author": *d.author, "url": *d.link, "deployed_at": *d.at,
	})
	if err != nil {
		fmt.Fprintf(stderr, "responder: encode deployment: %v\n", err)
		return 2
	}
	base, err := url.Parse(*d.url)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		fmt.Fprintln(stderr, "responder: --url must be responder's http(s) base URL")
		return 2
	}
	timeout := *d.timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.JoinPath("api/v1/deployments").String(), bytes.NewReader(body))
	if err != nil {
		fmt.Fprintln(stderr, "responder: --url must be responder's http(s) base URL")
		return 2
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "responder-deploy-record")
	if err := d.authorize(req); err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// Not err itself: it quotes the URL, which may carry credentials.
		fmt.Fprintf(stderr, "responder: record deployment: responder at %s did not answer: %v\n", redacted(base), rootCause(err))
		return 1
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		fmt.Fprintf(stderr, "responder: record deployment: %s: %s\n", resp.Status, strings.TrimSpace(string(answer)))
		return 1
	}
	var out struct {
		ID int64 `json:"id"`
	}
	_ = json.Unmarshal(answer, &out)
	fmt.Fprintf(stdout, "recorded deployment %d of %s\n", out.ID, *d.service)
	return 0
}

func (d *deployCommand) authorize(req *http.Request) error {
	basic := *d.basicUser != "" || *d.basicPasswordFile != ""
	switch {
	case basic && *d.basicUser == "":
		return errors.New("--basic-auth.password-file needs --basic-auth.username")
	case basic && (*d.bearerToken != "" || *d.bearerTokenFile != ""):
		return errors.New("a bearer token or --basic-auth, not both")
	}
	tok := *d.bearerToken
	if *d.bearerTokenFile != "" {
		if tok != "" {
			return fmt.Errorf("at most one of --bearer-token and --bearer-token-file")
		}
		b, err := os.ReadFile(*d.bearerTokenFile)
		if err != nil {
			return fmt.Errorf("read --bearer-token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
	if *d.basicUser != "" {
		var pass string
		if *d.basicPasswordFile != "" {
			b, err := os.ReadFile(*d.basicPasswordFile)
			if err != nil {
				return fmt.Errorf("read --basic-auth.password-file: %w", err)
			}
			pass = strings.TrimSpace(string(b))
		}
		req.SetBasicAuth(*d.basicUser, pass)
	}
	return nil
}

// redacted is u without what may be credentials: its user information,
// its query (a token parameter) and its fragment.
func redacted(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.Fragment = nil, "", ""
	return c.String()
}

// rootCause drops the URL a *url.Error carries.
func rootCause(err error) error {
	var uerr *url.Error
	for {
		if e, ok := err.(*url.Error); ok { //nolint:errorlint // unwrapping by hand, one level at a time
			uerr = e
			err = uerr.Err
			continue
		}
		return err
	}
}
