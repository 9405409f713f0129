package routing

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/alertmanager/timeinterval"

	"github.com/responder/responder/internal/incident"
)

// Router decides which receivers an alert goes to, with the semantics of
// Alertmanager's route tree (dispatch.Route.Match) and of its time interval
// stages (notify.TimeActiveStage and notify.TimeMuteStage), and explains the
// decision step by step.
//
// A Router is built once from a validated configuration and never changes,
// so it is safe for concurrent use; a reload builds a new one.
type Router struct {
	root      *node
	intervals map[string][]timeinterval.TimeInterval
	// byPath finds a node by its path, for NextUnmuted.
	byPath map[string]*node
	// matched are the label names the tree's matchers name, sorted.
	matched []string
}

// node is one route of the tree as the Router walks it: a copy of the
// configured Route with its receiver inherited and its path computed, so
// that later changes to the configuration cannot affect a running Router.
type node struct {
	path     string // "route", "route.routes[0]", ...
	receiver string // inherited from the parent when the route has none
	matchers labels.Matchers
	cont     bool
	active   []string
	mute     []string
	children []*node
}

// Decision is where one alert goes and why.
type Decision struct {
	// Receivers are the names of the chosen receivers, in the order of the
	// routes that chose them, each name once. It is empty, not nil, when
	// every matching route is muted.
	Receivers []string `json:"receivers"`
	// Trace has one Step per route the walk looked at, in walk order
	// (depth first, parents before their children).
	Trace []Step `json:"trace"`
}

// Step is what one route did with the alert.
type Step struct {
	// Path names the route in the configuration: "route" for the root,
	// "route.routes[0].routes[1]" below it.
	Path string `json:"path"`
	// Receiver is the route's receiver, inherited from its parent when the
	// route sets none. It is chosen only when Final is set and Muted is not.
	Receiver string `json:"receiver"`
	// Matched reports whether all of the route's matchers matched (the root
	// always matches). A route skipped because an earlier sibling matched
	// without continue has Matched false.
	Matched bool `json:"matched"`
	// Final reports whether the route is one of the matches in
	// Alertmanager's sense: it matched and none of its children did. Only a
	// final route sends to its receiver, and only its time intervals count.
	Final bool `json:"final"`
	// Muted reports whether a final route is muted by its time intervals:
	// outside all of its active_time_intervals, or inside one of its
	// mute_time_intervals.
	Muted bool `json:"muted"`
	// Reason is a short sentence saying why, naming the matchers, the time
	// intervals, their locations and the local time there.
	Reason string `json:"reason"`
}

// Summary returns the decision in one line: "receivers: incidents,
// pagerduty", with "; muted: ..." naming the receivers whose only matching
// routes were muted, or "receivers: none".
func (d Decision) Summary() string {
	var b strings.Builder
	b.WriteString("receivers: ")
	if len(d.Receivers) == 0 {
		b.WriteString("none")
	} else {
		b.WriteString(strings.Join(d.Receivers, ", "))
	}
	if muted := d.mutedReceivers(); len(muted) > 0 {
		b.WriteString("; muted: ")
		b.WriteString(strings.Join(muted, ", "))
	}
	return b.String()
}

// mutedReceivers returns the receivers of muted final routes that no other
// final route chose, each name once.
func (d Decision) mutedReceivers() []string {
	var muted []string
	for _, s := range d.Trace {
		if s.Final && s.Muted && !slices.Contains(d.Receivers, s.Receiver) && !slices.Contains(muted, s.Receiver) {
			muted = append(muted, s.Receiver)
		}
	}
	return muted
}

// NewRouter returns a Router for the route tree under root, whose time
// intervals are looked up in intervals. The tree is expected to have passed
// config validation (Route.Validate and the reference checks of
// config.Load); NewRouter checks again what would make routing wrong rather
// than fail loudly: a missing root receiver, an empty child route, a matcher
// that does not parse, a duplicate time interval name and a reference to an
// undefined time interval.
func NewRouter(root *Route, intervals []TimeInterval) (*Router, error) {
	if root == nil {
		return nil, errors.New("route: no route configured")
	}
	if root.Receiver == "" {
		return nil, errors.New("route: root route must have a receiver")
	}
	r := &Router{intervals: make(map[string][]timeinterval.TimeInterval, len(intervals)), byPath: map[string]*node{}}
	for i, ti := range intervals {
		if ti.Name == "" {
			return nil, fmt.Errorf("time_intervals[%d]: name is required", i)
		}
		if _, ok := r.intervals[ti.Name]; ok {
			return nil, fmt.Errorf("time_intervals[%d]: duplicate time interval name %q", i, ti.Name)
		}
		r.intervals[ti.Name] = slices.Clone(ti.TimeIntervals)
	}
	var errs []error
	r.root = r.compile(root, "route", "", &errs)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, n := range r.byPath {
		for _, m := range n.matchers {
			r.matched = append(r.matched, m.Name)
		}
	}
	slices.Sort(r.matched)
	r.matched = slices.Compact(r.matched)
	return r, nil
}

// MatchedLabels returns the label names the route tree's matchers name,
// sorted: the labels whose values decide where an alert goes.
func (r *Router) MatchedLabels() []string { return slices.Clone(r.matched) }

// compile copies route into a node, recursively, and appends a problem
// found on the way to errs.
func (r *Router) compile(route *Route, path, parentReceiver string, errs *[]error) *node {
	n := &node{
		path:     path,
		receiver: route.Receiver,
		cont:     route.Continue,
		active:   slices.Clone(route.ActiveTimeIntervals),
		mute:     slices.Clone(route.MuteTimeIntervals),
	}
	r.byPath[path] = n
	// Alertmanager inherits the receiver, but not the time intervals: a
	// child's active_time_intervals and mute_time_intervals are its own
	// (dispatch.newRoute assigns them, it does not merge them).
	if n.receiver == "" {
		n.receiver = parentReceiver
	}
	// The matchers are parsed again rather than taken from ParsedMatchers,
	// which is only filled by Validate: a route must never be taken for one
	// without matchers because Validate has not run on it.
	ms, err := incident.ParseMatcherLines("matchers", route.Matchers)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
	}
	n.matchers = ms
	for _, f := range []struct {
		field string
		names []string
	}{{"active_time_intervals", n.active}, {"mute_time_intervals", n.mute}} {
		for _, name := range f.names {
			if _, ok := r.intervals[name]; !ok {
				*errs = append(*errs, fmt.Errorf("%s: %s: undefined time interval %q used in route", path, f.field, name))
			}
		}
	}
	for i, child := range route.Routes {
		p := fmt.Sprintf("%s.routes[%d]", path, i)
		if child == nil {
			*errs = append(*errs, fmt.Errorf("%s: empty route", p))
			continue
		}
		n.children = append(n.children, r.compile(child, p, n.receiver, errs))
	}
	return n
}

// Route walks the tree for an alert with labels lset at time at and returns
// the receivers and the trace.
//
// The walk is Alertmanager's dispatch.Route.Match: depth first, a route
// matches when all of its matchers match (a missing label has the value ""),
// the children of a matching route are tried in order, the first matching
// child ends the search among its siblings unless it has continue set, and a
// matching route none of whose children match is itself a match ("final").
//
// Time intervals are applied afterwards to each final route, as
// Alertmanager's notify pipeline applies them to the aggregation group of
// that route: the route is muted when it has active_time_intervals and none
// of them contains at, or when one of its mute_time_intervals contains at.
// A muted route is still a match, so it still ends the search among its
// siblings when it has no continue; only its receiver is not chosen.
func (r *Router) Route(lset map[string]string, at time.Time) Decision {
	w := walk{router: r, labels: lset, at: at.UTC()}
	w.match(r.root, true)
	d := Decision{Receivers: []string{}, Trace: w.steps}
	for _, s := range d.Trace {
		// Alertmanager would notify a receiver once per matching route (one
		// aggregation group each); an incident goes to a receiver once.
		if s.Final && !s.Muted && !slices.Contains(d.Receivers, s.Receiver) {
			d.Receivers = append(d.Receivers, s.Receiver)
		}
	}
	return d
}

// NextUnmuted returns the first whole minute after from, and no later than
// from+horizon, at which a route that d (a decision of this Router at from)
// found final but muted is no longer muted, for a receiver that d did not
// choose; false when there is none. Which routes match does not depend on
// the time, only whether they are muted, so the decision at that minute
// chooses that receiver too. Time intervals have a resolution of a minute,
// so no window is skipped; each step checks only the intervals of the muted
// routes, a few microseconds.
func (r *Router) NextUnmuted(d Decision, from time.Time, horizon time.Duration) (time.Time, bool) {
	var muted []*node
	for _, s := range d.Trace {
		if s.Final && s.Muted && !slices.Contains(d.Receivers, s.Receiver) {
			if n := r.byPath[s.Path]; n != nil {
				muted = append(muted, n)
			}
		}
	}
	if len(muted) == 0 {
		return time.Time{}, false
	}
	end := from.Add(horizon)
	for t := from.UTC().Truncate(time.Minute).Add(time.Minute); !t.After(end); t = t.Add(time.Minute) {
		for _, n := range muted {
			if !r.mutedAt(n, t) {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// mutedAt reports whether the final route n is muted at t (UTC): outside
// all of its active time intervals, or inside one of its mute intervals.
func (r *Router) mutedAt(n *node, t time.Time) bool {
	in := func(name string) bool {
		return slices.ContainsFunc(r.intervals[name], func(ti timeinterval.TimeInterval) bool { return ti.ContainsTime(t) })
	}
	if len(n.active) > 0 && !slices.ContainsFunc(n.active, in) {
		return true
	}
	return slices.ContainsFunc(n.mute, in)
}

// walk is the state of one Route call.
type walk struct {
	router *Router
	labels map[string]string
	// at is in UTC, as Alertmanager's Intervener passes it to
	// TimeInterval.ContainsTime: an interval without a location is in UTC.
	at    time.Time
	steps []Step
}

// match records a step for n and, if n matches, for the children it tries,
// and reports whether n matched.
func (w *walk) match(n *node, root bool) bool {
	i := len(w.steps)
	w.steps = append(w.steps, Step{Path: n.path, Receiver: n.receiver})
	var matched string
	switch {
	case root:
		// Config rejects matchers on the root; like Alertmanager's
		// default route it takes every alert.
		matched = "default route"
	case len(n.matchers) == 0:
		matched = "no matchers: matches every alert"
	default:
		var ok bool
		if matched, ok = w.matchers(n.matchers); !ok {
			w.steps[i].Reason = "not matched: " + matched
			return false
		}
		matched = "matched " + matched
	}
	w.steps[i].Matched = true

	childMatched := false
	for j, c := range n.children {
		if !w.match(c, false) {
			continue
		}
		childMatched = true
		if !c.cont {
			for _, s := range n.children[j+1:] {
				w.steps = append(w.steps, Step{
					Path:     s.path,
					Receiver: s.receiver,
					Reason:   fmt.Sprintf("skipped: %s matched without continue", c.path),
				})
			}
			break
		}
	}
	if childMatched {
		w.steps[i].Reason = join(matched, "a child route matched")
		return true
	}
	if len(n.children) > 0 {
		matched = join(matched, "no child route matched")
	}

	w.steps[i].Final = true
	muting, other := w.times(n)
	// The outcome comes first: a muted route's reason starts with why it
	// is muted, then says what matched.
	parts := append([]string{matched}, other...)
	if len(muting) > 0 {
		w.steps[i].Muted = true
		parts = append(muting, parts...)
		parts[0] = "muted: " + parts[0]
	}
	w.steps[i].Reason = join(parts...)
	return true
}

// matchers checks ms against the alert. If all match it returns them as
// `severity="critical", team=~"db|web" (team="db")`, with the alert's value
// after each matcher that is not an equality; otherwise it returns the first
// that does not match, with the alert's value, and false.
func (w *walk) matchers(ms labels.Matchers) (string, bool) {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		v, ok := w.labels[m.Name]
		if !m.Matches(v) {
			return m.String() + " (" + labelValue(m.Name, v, ok) + ")", false
		}
		if m.Type == labels.MatchEqual {
			parts = append(parts, m.String())
		} else {
			parts = append(parts, m.String()+" ("+labelValue(m.Name, v, ok)+")")
		}
	}
	return strings.Join(parts, ", "), true
}

// times evaluates the time intervals of a final route n. It returns the
// phrases for the intervals that mute n and, separately, for those that do
// not; n is muted when the first slice is not empty. Both kinds are always
// evaluated, as in Alertmanager's notify.MutedByTimeIntervals, so that the
// reason names every interval that mutes.
func (w *walk) times(n *node) (muting, other []string) {
	if len(n.active) > 0 {
		var in []string
		for _, name := range n.active {
			if ok, where := w.contains(name); ok {
				in = append(in, name+" ("+where+")")
			}
		}
		if len(in) > 0 {
			other = append(other, "active in "+strings.Join(in, ", "))
		} else {
			out := make([]string, 0, len(n.active))
			for _, name := range n.active {
				_, where := w.contains(name)
				out = append(out, name+" ("+where+")")
			}
			muting = append(muting, plural("outside active time interval", len(out))+" "+strings.Join(out, ", "))
		}
	}
	if len(n.mute) > 0 {
		var in, out []string
		for _, name := range n.mute {
			ok, where := w.contains(name)
			if ok {
				in = append(in, name+" ("+where+")")
			} else {
				out = append(out, name+" ("+where+")")
			}
		}
		if len(in) > 0 {
			muting = append(muting, plural("in mute time interval", len(in))+" "+strings.Join(in, ", "))
		}
		if len(out) > 0 {
			other = append(other, plural("outside mute time interval", len(out))+" "+strings.Join(out, ", "))
		}
	}
	return muting, other
}

// contains reports whether the named time interval contains w.at and says
// where and when that was decided: "Europe/Rome, Sat 2026-11-28 22:14 CET".
// For an interval that contains w.at, that is the location of the first of
// its time ranges that does; otherwise every distinct location among them.
func (w *walk) contains(name string) (bool, string) {
	tis := w.router.intervals[name]
	if len(tis) == 0 {
		return false, "no time ranges"
	}
	var wheres []string
	for _, ti := range tis {
		where := localTime(ti, w.at)
		if ti.ContainsTime(w.at) {
			return true, where
		}
		if !slices.Contains(wheres, where) {
			wheres = append(wheres, where)
		}
	}
	return false, strings.Join(wheres, "; ")
}

// localTime returns the location of ti and the time t there, the way
// ContainsTime sees it. The zone abbreviation tells the two 02:30s of a
// fall-back night apart.
func localTime(ti timeinterval.TimeInterval, t time.Time) string {
	loc := time.UTC
	if ti.Location != nil && ti.Location.Location != nil {
		loc = ti.Location.Location
	}
	return loc.String() + ", " + t.In(loc).Format("Mon 2006-01-02 15:04 MST")
}

// maxValueLen caps the label values quoted in a reason, which is stored on
// every incident and shown in Slack.
const maxValueLen = 64

// labelValue describes the alert's value of label name for a reason.
func labelValue(name, v string, ok bool) string {
	if !ok {
		return "no " + name + " label"
	}
	if utf8.RuneCountInString(v) > maxValueLen {
		v = string([]rune(v)[:maxValueLen]) + "..."
	}
	return fmt.Sprintf("%s=%q", name, v)
}

func plural(s string, n int) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

func join(parts ...string) string { return strings.Join(parts, "; ") }
