package reconcile

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/alertmanager/matcher/compat"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"
)

// amConfig is the part of an Alertmanager configuration that decides group
// keys. Everything else in the file is ignored.
type amConfig struct {
	Route *amRoute `yaml:"route"`
}

type amRoute struct {
	Receiver string            `yaml:"receiver"`
	GroupBy  []string          `yaml:"group_by"`
	Match    map[string]string `yaml:"match"`
	MatchRE  map[string]string `yaml:"match_re"`
	Matchers []string          `yaml:"matchers"`
	Continue bool              `yaml:"continue"`
	Routes   []*amRoute        `yaml:"routes"`
}

// route is one node of Alertmanager's routing tree, as Alertmanager builds
// it (dispatch.NewRoute): the receiver and grouping are inherited, the
// matchers sorted.
type route struct {
	parent     *route
	receiver   string
	groupBy    map[model.LabelName]bool
	groupByAll bool
	matchers   labels.Matchers
	cont       bool
	routes     []*route
}

// Tree is Alertmanager's routing tree.
type Tree struct{ root *route }

// ParseTree reads the routing tree from an Alertmanager configuration file's
// text.
func ParseTree(text string) (*Tree, error) {
	var c amConfig
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		return nil, fmt.Errorf("parse alertmanager configuration: %w", err)
	}
	if c.Route == nil {
		return nil, fmt.Errorf("alertmanager configuration has no route")
	}
	root, err := newRoute(c.Route, nil)
	if err != nil {
		return nil, err
	}
	return &Tree{root: root}, nil
}

func newRoute(cr *amRoute, parent *route) (*route, error) {
	r := &route{parent: parent, cont: cr.Continue, groupBy: map[model.LabelName]bool{}}
	if parent != nil {
		r.receiver, r.groupBy, r.groupByAll = parent.receiver, parent.groupBy, parent.groupByAll
	}
	if cr.Receiver != "" {
		r.receiver = cr.Receiver
	}
	if cr.GroupBy != nil {
		r.groupBy, r.groupByAll = map[model.LabelName]bool{}, false
		for _, ln := range cr.GroupBy {
			if ln == "..." {
				r.groupByAll = true
				continue
			}
			r.groupBy[model.LabelName(ln)] = true
		}
	}
	for ln, lv := range cr.Match {
		m, err := labels.NewMatcher(labels.MatchEqual, ln, lv)
		if err != nil {
			return nil, fmt.Errorf("route match %s: %w", ln, err)
		}
		r.matchers = append(r.matchers, m)
	}
	for ln, lv := range cr.MatchRE {
		m, err := labels.NewMatcher(labels.MatchRegexp, ln, lv)
		if err != nil {
			return nil, fmt.Errorf("route match_re %s: %w", ln, err)
		}
		r.matchers = append(r.matchers, m)
	}
	for _, s := range cr.Matchers {
		ms, err := compat.Matchers(s, "reconcile")
		if err != nil {
			return nil, fmt.Errorf("route matchers %q: %w", s, err)
		}
		r.matchers = append(r.matchers, ms...)
	}
	sort.Sort(r.matchers)
	for _, c := range cr.Routes {
		child, err := newRoute(c, r)
		if err != nil {
			return nil, err
		}
		r.routes = append(r.routes, child)
	}
	return r, nil
}

// match returns the routes an alert with lset ends at, as Alertmanager's
// dispatcher does: the deepest matching routes, siblings tried in order
// until one matches without continue.
func (r *route) match(lset model.LabelSet) []*route {
	if !r.matchers.Matches(lset) {
		return nil
	}
	var all []*route
	for _, c := range r.routes {
		m := c.match(lset)
		all = append(all, m...)
		if m != nil && !c.cont {
			break
		}
	}
	if len(all) == 0 {
		all = append(all, r)
	}
	return all
}

// key is the route's key, the first part of a group key.
func (r *route) key() string {
	var b strings.Builder
	if r.parent != nil {
		b.WriteString(r.parent.key())
		b.WriteByte('/')
	}
	b.WriteString(r.matchers.String())
	return b.String()
}

// Group is where Alertmanager puts an alert: a receiver and a group key.
type Group struct {
	Receiver string
	Key      string
	Labels   map[string]string
}

// Groups returns the groups an alert with these labels belongs to, as
// Alertmanager computes them (dispatch's getGroupLabels and aggrGroup's
// GroupKey): "<route key>:<group labels>".
func (t *Tree) Groups(lbls map[string]string) []Group {
	lset := make(model.LabelSet, len(lbls))
	for k, v := range lbls {
		lset[model.LabelName(k)] = model.LabelValue(v)
	}
	var out []Group
	for _, r := range t.root.match(lset) {
		gl := model.LabelSet{}
		for ln, lv := range lset {
			if r.groupByAll || r.groupBy[ln] {
				gl[ln] = lv
			}
		}
		g := Group{Receiver: r.receiver, Key: r.key() + ":" + gl.String(), Labels: make(map[string]string, len(gl))}
		for ln, lv := range gl {
			g.Labels[string(ln)] = string(lv)
		}
		if !slices.ContainsFunc(out, func(o Group) bool { return o.Key == g.Key }) {
			out = append(out, g)
		}
	}
	return out
}
