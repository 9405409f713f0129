package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/template"

	"github.com/responder/responder/internal/incident"
)

// Source is what the reconciler needs from storage.
type Source interface {
	// FiringIncidents returns the firing incidents with their alerts.
	FiringIncidents(ctx context.Context) ([]incident.Incident, error)
	// Receivers returns the Alertmanager receivers notifications came from.
	Receivers(ctx context.Context) ([]string, error)
}

// Fix is one synthesised notification that brings an incident in step with
// Alertmanager, with the reason recorded with it.
type Fix struct {
	Message *incident.Message
	Reason  string
	// Release marks a fix that settles a held incident (one kept open by
	// a notification from which Alertmanager left alerts out): its alert
	// states are those storage already has, so it must not be taken for a
	// duplicate of the notification that held it.
	Release bool
}

// Alert is one alert as Alertmanager's API v2 returns it (GET
// /api/v2/alerts, gettableAlert).
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
	Status       struct {
		State string `json:"state"` // active | suppressed | unprocessed
	} `json:"status"`
}

// Client reads Alertmanager's API v2.
type Client struct {
	base *url.URL
	http *http.Client
}

// NewClient returns a client of the Alertmanager at baseURL.
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("alertmanager url must be an absolute http or https URL")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{base: u, http: hc}, nil
}

// Alerts returns every alert Alertmanager holds that has not resolved.
func (c *Client) Alerts(ctx context.Context) ([]Alert, error) {
	var out []Alert
	err := c.get(ctx, "/api/v2/alerts", &out)
	return out, err
}

// Tree returns Alertmanager's routing tree, read from its configuration.
func (c *Client) Tree(ctx context.Context) (*Tree, error) {
	var st struct {
		Config struct {
			Original string `json:"original"`
		} `json:"config"`
	}
	if err := c.get(ctx, "/api/v2/status", &st); err != nil {
		return nil, err
	}
	return ParseTree(st.Config.Original)
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry credentials
		}
		return fmt.Errorf("GET alertmanager %s: %w", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET alertmanager %s: %s", path, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET alertmanager %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET alertmanager %s: decode: %w", path, err)
	}
	return nil
}

// Reconciler finds the differences between Alertmanager and storage. It
// remembers since when each difference has been seen, so that only those
// that outlast the grace period are fixed; it is not safe for concurrent
// use.
type Reconciler struct {
	cfg    Config
	am     *Client
	src    Source
	logger *slog.Logger
	amURL  string
	// missing: group key + fingerprint + startsAt of an active alert with
	// no firing incident alert → first seen.
	missing map[string]time.Time
	// gone: incident alert (group key + fingerprint) Alertmanager no longer
	// has → first seen.
	gone map[string]time.Time
	// settled: group key of a held incident (firing, no alert firing) of
	// which Alertmanager has no active alert → first seen.
	settled map[string]time.Time
}

// New returns a Reconciler.
func New(cfg Config, am *Client, amURL string, src Source, logger *slog.Logger) *Reconciler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{cfg: cfg, am: am, src: src, logger: logger, amURL: amURL, missing: map[string]time.Time{}, gone: map[string]time.Time{}, settled: map[string]time.Time{}}
}

// Round reads Alertmanager and storage once and returns the fixes due now:
// a firing notification for each group Alertmanager has alerts of that no
// firing incident holds, and a notification that resolves the alerts of a
// firing incident that Alertmanager no longer has. Either read failing
// means no fix at all: a partial view must not resolve anything.
func (r *Reconciler) Round(ctx context.Context, now time.Time) ([]Fix, error) {
	alerts, err := r.am.Alerts(ctx)
	if err != nil {
		return nil, err
	}
	incs, err := r.src.FiringIncidents(ctx)
	if err != nil {
		return nil, err
	}
	receivers := r.cfg.Receivers
	if len(receivers) == 0 {
		if receivers, err = r.src.Receivers(ctx); err != nil {
			return nil, err
		}
	}
	if len(receivers) == 0 {
		return nil, nil // nothing ever came from Alertmanager: nothing to compare
	}
	var fixes []Fix

	// Resolves: incident alerts Alertmanager no longer has. Fingerprints
	// do not depend on routing, so this needs no routing tree.
	active := make(map[string]bool, len(alerts))
	for _, a := range alerts {
		active[a.Fingerprint] = true
	}
	held := map[string]bool{} // group key + fingerprint + startsAt of firing incident alerts
	seenGone := map[string]bool{}
	for i := range incs {
		inc := &incs[i]
		if !slices.Contains(receivers, inc.Receiver) {
			continue
		}
		var resolvedNow []string
		for _, a := range inc.Alerts {
			if a.Status != incident.StatusFiring {
				continue
			}
			held[inc.GroupKey+"\x00"+a.Fingerprint+"\x00"+a.StartsAt.UTC().String()] = true
			if active[a.Fingerprint] {
				continue
			}
			k := inc.GroupKey + "\x00" + a.Fingerprint
			seenGone[k] = true
			first, ok := r.gone[k]
			if !ok {
				r.gone[k] = now
				first = now
			}
			if now.Sub(first) >= r.cfg.Grace {
				resolvedNow = append(resolvedNow, a.Fingerprint)
			}
		}
		if len(resolvedNow) > 0 {
			fixes = append(fixes, Fix{Message: resolveMessage(inc, resolvedNow, now, r.amURL), Reason: fmt.Sprintf(
				"reconciled: %d %s no longer in Alertmanager, marked resolved (the resolve notification never arrived)", len(resolvedNow), plural("alert", len(resolvedNow)))})
		}
	}
	for k := range r.gone {
		if !seenGone[k] {
			delete(r.gone, k)
		}
	}

	// Opens: active alerts of our receivers that no firing incident holds.
	tree, err := r.am.Tree(ctx)
	if err != nil {
		r.logger.WarnContext(ctx, "cannot read alertmanager's routing tree; missed webhooks are not reconciled this round", "err", err)
		return fixes, nil
	}
	type pending struct {
		group  Group
		alerts []Alert
		due    bool
	}
	groups := map[string]*pending{}
	seenMissing := map[string]bool{}
	for _, a := range alerts {
		if a.Status.State != "active" {
			continue // silenced or inhibited alerts are not notified either
		}
		for _, g := range tree.Groups(a.Labels) {
			if !slices.Contains(receivers, g.Receiver) {
				continue
			}
			p := groups[g.Key]
			if p == nil {
				p = &pending{group: g}
				groups[g.Key] = p
			}
			p.alerts = append(p.alerts, a)
			k := g.Key + "\x00" + a.Fingerprint + "\x00" + a.StartsAt.UTC().String()
			if held[k] {
				continue
			}
			seenMissing[k] = true
			first, ok := r.missing[k]
			if !ok {
				r.missing[k] = now
				first = now
			}
			if now.Sub(first) >= r.cfg.Grace {
				p.due = true
			}
		}
	}
	for k := range r.missing {
		if !seenMissing[k] {
			delete(r.missing, k)
		}
	}
	activeGroups := make(map[string]bool, len(groups))
	for k := range groups {
		activeGroups[k] = true
	}
	fixes = append(fixes, r.release(incs, receivers, activeGroups, now)...)
	keys := slices.Sorted(maps.Keys(groups))
	for _, k := range keys {
		p := groups[k]
		if !p.due {
			continue
		}
		fixes = append(fixes, Fix{Message: firingMessage(p.group, p.alerts, r.amURL), Reason: fmt.Sprintf(
			"reconciled: %d firing %s in Alertmanager with no notification received", len(p.alerts), plural("alert", len(p.alerts)))})
	}
	return fixes, nil
}

// release returns a fix for each held incident (firing with no alert
// firing: kept open by a notification from which Alertmanager left alerts
// out) whose group has had no active alert in Alertmanager for the grace
// period: what the notification left out has resolved too. A group that
// still has active alerts is not released here: the round's opens add
// them to the incident.
func (r *Reconciler) release(incs []incident.Incident, receivers []string, activeGroups map[string]bool, now time.Time) []Fix {
	var fixes []Fix
	seen := map[string]bool{}
	for i := range incs {
		inc := &incs[i]
		if !slices.Contains(receivers, inc.Receiver) || len(inc.Alerts) == 0 || activeGroups[inc.GroupKey] ||
			slices.ContainsFunc(inc.Alerts, func(a incident.Alert) bool { return a.Status == incident.StatusFiring }) {
			continue
		}
		seen[inc.GroupKey] = true
		first, ok := r.settled[inc.GroupKey]
		if !ok {
			r.settled[inc.GroupKey] = now
			first = now
		}
		if now.Sub(first) < r.cfg.Grace {
			continue
		}
		fixes = append(fixes, Fix{
			Message: releaseMessage(inc, now, r.amURL), Release: true,
			Reason: "reconciled: Alertmanager has no active alert of this group left, so the alerts that a truncated notification (max_alerts) left out have resolved too",
		})
	}
	for k := range r.settled {
		if !seen[k] {
			delete(r.settled, k)
		}
	}
	return fixes
}

// Unhold returns a fix that releases each held incident of incs (firing,
// with no alert firing) at once. It is for when reconciliation is off:
// nothing would settle them otherwise, and a truncated notification then
// resolves as Alertmanager says (see store.Options.HoldTruncated). amURL
// may be empty.
func Unhold(incs []incident.Incident, now time.Time, amURL string) []Fix {
	var fixes []Fix
	for i := range incs {
		inc := &incs[i]
		if inc.Status != incident.StatusFiring || len(inc.Alerts) == 0 ||
			slices.ContainsFunc(inc.Alerts, func(a incident.Alert) bool { return a.Status == incident.StatusFiring }) {
			continue
		}
		fixes = append(fixes, Fix{
			Message: releaseMessage(inc, now, amURL), Release: true,
			Reason: "released: reconciliation is off, so the resolve of a truncated notification (max_alerts) is no longer held",
		})
	}
	return fixes
}

// firingMessage is the notification Alertmanager would have sent for the
// group: all its firing alerts.
func firingMessage(g Group, alerts []Alert, amURL string) *incident.Message {
	d := &template.Data{Receiver: g.Receiver, Status: incident.StatusFiring, GroupLabels: g.Labels, ExternalURL: amURL}
	for _, a := range alerts {
		d.Alerts = append(d.Alerts, template.Alert{
			Status: incident.StatusFiring, Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt,
			GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint,
		})
	}
	d.CommonLabels = common(alerts, func(a Alert) map[string]string { return a.Labels })
	d.CommonAnnotations = common(alerts, func(a Alert) map[string]string { return a.Annotations })
	return &incident.Message{Data: d, Version: incident.SupportedVersion, GroupKey: g.Key}
}

// resolveMessage is the incident's group with the given alerts resolved at
// now and its other firing alerts still firing.
func resolveMessage(inc *incident.Incident, fingerprints []string, now time.Time, amURL string) *incident.Message {
	d := &template.Data{
		Receiver: inc.Receiver, GroupLabels: inc.GroupLabels, CommonLabels: inc.CommonLabels,
		CommonAnnotations: inc.CommonAnnotations, ExternalURL: amURL, Status: incident.StatusResolved,
	}
	if inc.ExternalURL != "" {
		d.ExternalURL = inc.ExternalURL
	}
	for _, a := range inc.Alerts {
		if a.Status != incident.StatusFiring {
			continue
		}
		ta := template.Alert{
			Status: incident.StatusFiring, Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt,
			GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint,
		}
		if slices.Contains(fingerprints, a.Fingerprint) {
			ta.Status, ta.EndsAt = incident.StatusResolved, now
		} else {
			d.Status = incident.StatusFiring
		}
		d.Alerts = append(d.Alerts, ta)
	}
	return &incident.Message{Data: d, Version: incident.SupportedVersion, GroupKey: inc.GroupKey}
}

// releaseMessage is a held incident's group with all its alerts resolved,
// as storage has them, leaving nothing out.
func releaseMessage(inc *incident.Incident, now time.Time, amURL string) *incident.Message {
	m := resolveMessage(inc, nil, now, amURL)
	m.Status = incident.StatusResolved
	for _, a := range inc.Alerts {
		end := now
		if a.EndsAt != nil {
			end = *a.EndsAt
		}
		m.Alerts = append(m.Alerts, template.Alert{
			Status: incident.StatusResolved, Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, EndsAt: end,
			GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint,
		})
	}
	return m
}

// common returns the label pairs all alerts share.
func common(alerts []Alert, kv func(Alert) map[string]string) map[string]string {
	out := map[string]string{}
	if len(alerts) == 0 {
		return out
	}
	maps.Copy(out, kv(alerts[0]))
	for _, a := range alerts[1:] {
		m := kv(a)
		for k, v := range out {
			if m[k] != v {
				delete(out, k)
			}
		}
	}
	return out
}

func plural(s string, n int) string {
	if n == 1 {
		return s
	}
	return s + "s"
}
