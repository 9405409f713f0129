package routing

import (
	"fmt"
	"io"
	"strings"
)

// FormatTrace writes d for a person, as `responder routes test` prints it:
// the chosen receivers comma-separated on the first line (like amtool config
// routes test), then one line per step of the trace, indented by depth in
// the tree, with the route's receiver and the reason:
//
//	incidents
//	  route [incidents] default route; a child route matched
//	    route.routes[0] [pagerduty] muted: outside active time interval business-hours (Europe/Rome, Sat 2026-11-28 22:14 CET); matched severity="critical"
//	    route.routes[1] [incidents] no matchers: matches every alert
//
// Write errors are ignored: the writer is a terminal or a buffer.
func FormatTrace(w io.Writer, d Decision) {
	if len(d.Receivers) == 0 {
		_, _ = fmt.Fprintln(w, "none (every matching route is muted)")
	} else {
		_, _ = fmt.Fprintln(w, strings.Join(d.Receivers, ", "))
	}
	for _, s := range d.Trace {
		// "route" is depth 1, "route.routes[0]" depth 2, and so on.
		depth := 1 + strings.Count(s.Path, "routes[")
		_, _ = fmt.Fprintf(w, "%s%s [%s] %s\n", strings.Repeat("  ", depth), s.Path, s.Receiver, s.Reason)
	}
}
