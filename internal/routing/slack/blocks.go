package slack

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/alertmanager/template"
	goslack "github.com/slack-go/slack"

	"github.com/responder/responder/internal/incident"
)

// Block Kit limits for messages (docs.slack.dev/reference/block-kit/blocks).
// Slack rejects a message over any of them with invalid_blocks, so the
// renderer truncates below them and never relies on Slack to do it.
const (
	maxBlocks       = 50
	maxSectionText  = 3000
	maxHeaderText   = 150
	maxFieldText    = 2000
	maxContextElems = 10
	// maxMessageText is where Slack truncates the top-level text.
	maxMessageText = 40000
	// maxFallbackText keeps the notification text short: Slack recommends
	// under 4,000 characters, and it only has to identify the incident.
	maxFallbackText = 3000
	// maxTotalText bounds the characters of all blocks together: Slack
	// answers msg_blocks_too_long somewhere above that (undocumented; about
	// 13,200 in slackapi/bolt-js#2509, where Slack speaks of 12,000 text
	// characters with a buffer for the block containers, and a message of
	// 11,341 characters of text refused in slackapi/bolt-js#2867). A
	// refused post is not retried, so this keeps well under: 11,000, as
	// the context reply does.
	maxTotalText = 11000
)

// Rendering choices below the limits, so that a message stays readable.
const (
	maxListedAlerts   = 20
	maxResolvedListed = 5
	maxHighlights     = 4
	maxLabelName      = 30
	maxLabelValue     = 60
	maxAlertSummary   = 150
	maxFieldValue     = 300
	maxNote           = 300
	maxLinkURL        = 2000
	maxTemplateChunks = 3
)

// highlightLabels are shown for an alert when no label sets it apart from
// the incident's other alerts, in this order of preference.
var highlightLabels = []string{"instance", "pod", "service", "job", "namespace", "cluster", "deployment"}

// message is a rendered Slack message: blocks plus the fallback text that
// notifications and old clients show.
type message struct {
	Text   string
	Blocks []goslack.Block
	// Key, when set, is sent as the message's metadata so that the message
	// can be found again (FindPosted) when the answer to its post is lost.
	Key string
}

// render builds the parent message of an incident. It never fails: a title
// or text template that does not execute falls back to the built-in one.
func (n *Notifier) render(inc *incident.Incident, extra Extra) message {
	firing := inc.Status != incident.StatusResolved
	common := inc.CommonLabels
	alerts := sortedAlerts(inc.Alerts)
	var data *template.Data
	if n.templates.Title != "" || n.templates.Text != "" {
		data = templateData(inc)
	}

	title := defaultTitle(inc, firing)
	if s, ok := n.execTemplate("title", n.templates.Title, data); ok {
		title = strings.Join(strings.Fields(s), " ")
	}
	title = truncate(title, maxHeaderText)
	header := goslack.NewHeaderBlock(goslack.NewTextBlockObject(goslack.PlainTextType, title, true, false))
	used := runes(title)

	fields := n.fields(inc, firing, alerts)
	for _, f := range fields {
		used += runes(f.Text)
	}
	fieldsBlock := goslack.NewSectionBlock(nil, fields, nil)

	var tail []goslack.Block
	if b := notesBlock(extra.Notes); b != nil {
		tail = append(tail, b)
		used += contextRunes(b)
	}
	links := n.linksBlock(inc, firing, alerts)
	tail = append(tail, links)
	used += contextRunes(links)

	summary, description := annotations(inc, alerts)
	var body []goslack.Block
	if s, ok := n.execTemplate("text", n.templates.Text, data); ok {
		for _, chunk := range chunks(s, maxSectionText, maxTemplateChunks, maxTotalText-used) {
			body = append(body, mrkdwnSection(chunk))
		}
	} else {
		var lists []string
		listBudget := min(maxSectionText, (maxTotalText-used)/2)
		fa, ra := splitAlerts(alerts)
		if firing {
			fl := alertList("Firing alerts", fa, max(inc.FiringAlerts, len(fa)), common, summary, maxListedAlerts, listBudget)
			lists = appendNonEmpty(lists, fl)
			used += runes(fl)
			rl := alertList("Resolved alerts", ra, max(inc.ResolvedAlerts, len(ra)), common, summary, maxResolvedListed, min(listBudget, maxSectionText/3))
			lists = appendNonEmpty(lists, rl)
			used += runes(rl)
		} else {
			all := slices.Concat(fa, ra)
			rl := alertList("Resolved alerts", all, max(inc.ResolvedAlerts+inc.FiringAlerts, len(all)), common, summary, maxListedAlerts, listBudget)
			lists = appendNonEmpty(lists, rl)
			used += runes(rl)
		}
		if s := summaryText(summary, description, min(maxSectionText, maxTotalText-used)); s != "" {
			body = append(body, mrkdwnSection(s))
		}
		for _, l := range lists {
			body = append(body, mrkdwnSection(l))
		}
	}

	blocks := make([]goslack.Block, 0, 2+len(body)+len(tail))
	blocks = append(blocks, header)
	blocks = append(blocks, body...)
	blocks = append(blocks, fieldsBlock)
	blocks = append(blocks, tail...)
	if len(blocks) > maxBlocks {
		// Unreachable with the layout above; kept so that a future block
		// cannot make Slack reject the whole message.
		blocks = append(blocks[:maxBlocks-1], blocks[len(blocks)-1])
	}

	fallback := Escape(title)
	if summary != "" {
		fallback += " — " + Escape(summary)
	}
	return message{Text: TruncateEscaped(fallback, maxFallbackText), Blocks: blocks}
}

// defaultTitle is e.g. ":rotating_light: FIRING: HighErrorRate".
func defaultTitle(inc *incident.Incident, firing bool) string {
	name := inc.CommonLabels["alertname"]
	if name == "" {
		name = inc.GroupLabels["alertname"]
	}
	if name == "" {
		var names []string
		for _, a := range inc.Alerts {
			if n := a.Labels["alertname"]; n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		name = strings.Join(names, ", ")
	}
	if name == "" {
		name = fmt.Sprintf("incident %d", inc.ID)
	}
	if firing {
		return ":rotating_light: FIRING: " + name
	}
	return ":white_check_mark: RESOLVED: " + name
}

// fields is the facts grid: status, severity, start, end, group.
func (n *Notifier) fields(inc *incident.Incident, firing bool, alerts []incident.Alert) []*goslack.TextBlockObject {
	var out []*goslack.TextBlockObject
	add := func(name, value string) {
		if value != "" {
			out = append(out, mrkdwn("*"+name+"*\n"+value))
		}
	}
	if n := max(inc.FiringAlerts, countStatus(alerts, incident.StatusFiring)); firing && n == 0 {
		// Kept open by a notification from which Alertmanager left alerts
		// out (store.Options.HoldTruncated).
		add("Status", ":red_circle: FIRING · resolve held: Alertmanager left alerts out of its last notification (max_alerts), and every alert responder knows of has resolved; reconciliation settles it")
	} else if firing {
		add("Status", fmt.Sprintf(":red_circle: FIRING · %d %s", n, plural(n, "alert", "alerts")))
	} else {
		s := ":large_green_circle: RESOLVED"
		if inc.ResolvedAt != nil && !inc.OpenedAt.IsZero() {
			s += " after " + HumanDuration(inc.ResolvedAt.Sub(inc.OpenedAt))
		}
		add("Status", s)
	}
	add("Severity", severity(inc, alerts))
	if !inc.OpenedAt.IsZero() {
		add("Started", slackDate(inc.OpenedAt))
	}
	if !firing && inc.ResolvedAt != nil {
		add("Resolved", slackDate(*inc.ResolvedAt))
	}
	var group []string
	for _, k := range sortedKeys(inc.GroupLabels) {
		if k != "alertname" {
			group = append(group, codeLabel(k, inc.GroupLabels[k]))
		}
	}
	add("Group", truncateJoined(group, " ", maxFieldValue))
	return out
}

// severity is the common severity label, or the distinct severities of the
// alerts when they differ.
func severity(inc *incident.Incident, alerts []incident.Alert) string {
	if s := inc.CommonLabels["severity"]; s != "" {
		return TruncateEscaped(Escape(s), maxFieldValue)
	}
	var sev []string
	for _, a := range alerts {
		if s := a.Labels["severity"]; s != "" && !slices.Contains(sev, s) {
			sev = append(sev, s)
		}
	}
	slices.Sort(sev)
	return TruncateEscaped(Escape(strings.Join(sev, ", ")), maxFieldValue)
}

// annotations picks the summary and description: the common ones, or the
// only alert's.
func annotations(inc *incident.Incident, alerts []incident.Alert) (summary, description string) {
	summary, description = inc.CommonAnnotations["summary"], inc.CommonAnnotations["description"]
	if len(alerts) == 1 {
		summary = cmp.Or(summary, alerts[0].Annotations["summary"])
		description = cmp.Or(description, alerts[0].Annotations["description"])
	}
	return summary, description
}

// summaryText is "*summary*\ndescription", escaped and cut to budget.
func summaryText(summary, description string, budget int) string {
	if budget <= 0 {
		return ""
	}
	var s string
	if summary != "" {
		s = "*" + TruncateEscaped(Escape(strings.Join(strings.Fields(summary), " ")), min(budget, maxSectionText)-2) + "*"
	}
	if description != "" {
		if s != "" {
			s += "\n"
		}
		if rest := budget - runes(s); rest > 1 {
			s += TruncateEscaped(Escape(description), rest)
		}
	}
	return strings.TrimSpace(s)
}

// alertList lists alerts, one line each, under a bold heading, within limit
// lines and budget characters, ending with "and N more alerts" when total
// exceeds what is listed. It is "" when there is nothing to list.
func alertList(heading string, alerts []incident.Alert, total int, common map[string]string, commonSummary string, limit, budget int) string {
	if len(alerts) == 0 {
		// The incident was not read in full; the facts grid has the count.
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%s (%d)*", heading, total)
	// Keep room for the "and N more" line.
	reserve := runes(fmt.Sprintf("\n_and %d more alerts_", total))
	used := runes(b.String())
	listed := 0
	for _, a := range alerts {
		line := "\n" + alertLine(a, common, commonSummary)
		if listed >= limit || used+runes(line)+reserve > budget {
			break
		}
		b.WriteString(line)
		used += runes(line)
		listed++
	}
	if more := total - listed; more > 0 {
		fmt.Fprintf(&b, "\n_and %d more %s_", more, plural(more, "alert", "alerts"))
	}
	return b.String()
}

// alertLine is "• `instance=web-1` `pod=x` — summary": the labels that set
// the alert apart from the others, and its summary when it differs from the
// common one.
func alertLine(a incident.Alert, common map[string]string, commonSummary string) string {
	var keys []string
	for _, k := range sortedKeys(a.Labels) {
		if v, ok := common[k]; !ok || v != a.Labels[k] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		for _, k := range highlightLabels {
			if _, ok := a.Labels[k]; ok {
				keys = append(keys, k)
			}
		}
	}
	var parts []string
	for i, k := range keys {
		if i == maxHighlights {
			parts = append(parts, fmt.Sprintf("+%d", len(keys)-maxHighlights))
			break
		}
		parts = append(parts, codeLabel(k, a.Labels[k]))
	}
	line := "• " + strings.Join(parts, " ")
	if len(parts) == 0 {
		line += codeSpan(a.Fingerprint, maxLabelValue)
	}
	if s := a.Annotations["summary"]; s != "" && s != commonSummary {
		line += " — " + TruncateEscaped(Escape(strings.Join(strings.Fields(s), " ")), maxAlertSummary)
	}
	return line
}

// codeLabel is "`name=value`", escaped and cut, with backticks replaced so
// that a value cannot end the code span.
func codeLabel(name, value string) string {
	clean := func(s string, n int) string {
		return TruncateEscaped(Escape(strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "`", "'")), n)
	}
	return "`" + clean(name, maxLabelName) + "=" + clean(value, maxLabelValue) + "`"
}

// notesBlock shows Extra.Notes (route decisions, storm digests) as a context
// block, or nil when there are none.
func notesBlock(notes []string) *goslack.ContextBlock {
	var elems []goslack.MixedElement
	for i, note := range notes {
		if i == maxContextElems-1 && len(notes) > maxContextElems {
			more := len(notes) - i
			elems = append(elems, mrkdwn(fmt.Sprintf("_and %d more %s_", more, plural(more, "note", "notes"))))
			break
		}
		if note = strings.TrimSpace(note); note != "" {
			elems = append(elems, mrkdwn(TruncateEscaped(Escape(note), maxNote)))
		}
	}
	if len(elems) == 0 {
		return nil
	}
	return goslack.NewContextBlock("", elems...)
}

// linksBlock is the footer: links to the alert's source, its runbook, an
// Alertmanager silence for the common labels and the incident in responder,
// then the incident number and the time of this rendering.
func (n *Notifier) linksBlock(inc *incident.Incident, firing bool, alerts []incident.Alert) *goslack.ContextBlock {
	var links []string
	add := func(raw, label string) {
		if u, ok := safeURL(raw); ok {
			links = append(links, "<"+u+"|"+label+">")
		}
	}
	var source, runbook string
	for _, a := range alerts {
		if source == "" && (a.Status == incident.StatusFiring || !firing) {
			source = a.GeneratorURL
		}
		if runbook == "" {
			runbook = a.Annotations["runbook_url"]
		}
	}
	add(source, ":mag: Source")
	add(cmp.Or(inc.CommonAnnotations["runbook_url"], runbook), ":book: Runbook")
	if firing && inc.ExternalURL != "" {
		add(silenceURL(inc.ExternalURL, inc.CommonLabels), ":no_bell: Silence")
	}
	if n.externalURL != "" && inc.ID != 0 {
		add(fmt.Sprintf("%s/api/v1/incidents/%d", n.externalURL, inc.ID), ":link: Incident")
	}
	footer := fmt.Sprintf("Incident #%d · updated %s", inc.ID, slackDate(n.now()))
	elems := []goslack.MixedElement{}
	if len(links) > 0 {
		elems = append(elems, mrkdwn(truncateJoined(links, "  ·  ", maxSectionText)))
	}
	elems = append(elems, mrkdwn(footer))
	return goslack.NewContextBlock("", elems...)
}

// silenceURL links to Alertmanager's new-silence form, prefilled with the
// common labels (alertname first) as long as the URL stays short enough.
func silenceURL(amURL string, common map[string]string) string {
	keys := sortedKeys(common)
	slices.SortStableFunc(keys, func(a, b string) int {
		return cmp.Compare(boolInt(b == "alertname"), boolInt(a == "alertname"))
	})
	base := strings.TrimRight(amURL, "/") + "/#/silences/new"
	var ms []string
	best := base
	for _, k := range keys {
		m, err := labels.NewMatcher(labels.MatchEqual, k, common[k])
		if err != nil {
			continue
		}
		ms = append(ms, m.String())
		u := base + "?filter=" + strings.ReplaceAll(url.QueryEscape("{"+strings.Join(ms, ", ")+"}"), "+", "%20")
		if len(u) > maxLinkURL {
			break
		}
		best = u
	}
	return best
}

// safeURL returns raw ready to be put in a mrkdwn link, or false when it is
// not an absolute http(s) URL (a label or annotation must not produce a
// javascript: or relative link) or is too long to be a link.
func safeURL(raw string) (string, bool) {
	if raw == "" || len(raw) > maxLinkURL {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false
	}
	// '|' would end the URL part of <url|label>.
	return Escape(strings.ReplaceAll(u.String(), "|", "%7C")), true
}

// templateData is what title and text templates execute against: the
// Alertmanager notification data, rebuilt from the incident.
func templateData(inc *incident.Incident) *template.Data {
	d := &template.Data{
		Receiver:          inc.Receiver,
		Status:            inc.Status,
		GroupLabels:       template.KV(inc.GroupLabels),
		CommonLabels:      template.KV(inc.CommonLabels),
		CommonAnnotations: template.KV(inc.CommonAnnotations),
		ExternalURL:       inc.ExternalURL,
	}
	for _, kv := range []*template.KV{&d.GroupLabels, &d.CommonLabels, &d.CommonAnnotations} {
		if *kv == nil {
			*kv = template.KV{}
		}
	}
	for _, a := range sortedAlerts(inc.Alerts) {
		ta := template.Alert{
			Status:       a.Status,
			Labels:       template.KV(a.Labels),
			Annotations:  template.KV(a.Annotations),
			StartsAt:     a.StartsAt,
			GeneratorURL: a.GeneratorURL,
			Fingerprint:  a.Fingerprint,
		}
		if a.EndsAt != nil {
			ta.EndsAt = *a.EndsAt
		}
		d.Alerts = append(d.Alerts, ta)
	}
	return d
}

// chunks splits s into at most n pieces of at most size characters each,
// at line breaks where it can, within budget characters in all.
func chunks(s string, size, n, budget int) []string {
	s = strings.TrimSpace(s)
	var out []string
	for s != "" && len(out) < n && budget > 1 {
		limit := min(size, budget)
		if runes(s) <= limit {
			out = append(out, s)
			break
		}
		last := len(out) == n-1 || limit < size
		if last {
			out = append(out, truncateMarkup(s, limit))
			break
		}
		cut := byteOffset(s, limit)
		if i := strings.LastIndexByte(s[:cut], '\n'); i > 0 {
			cut = i
		}
		cut = tokenSafeCut(s, cut)
		out = append(out, strings.TrimSpace(s[:cut]))
		budget -= runes(out[len(out)-1])
		s = strings.TrimSpace(s[cut:])
	}
	return slices.DeleteFunc(out, func(c string) bool { return c == "" })
}

// tokenSafeCut moves a cut at byte offset cut of s back to the start of
// the <…> token (link, mention, date) that it would split. A '<' with no
// '>' after it is no token, and a token that starts s is left to be cut.
func tokenSafeCut(s string, cut int) int {
	open := strings.LastIndexByte(s[:cut], '<')
	if open <= 0 || strings.LastIndexByte(s[:cut], '>') > open || !strings.Contains(s[cut:], ">") {
		return cut
	}
	return open
}

// truncateMarkup cuts mrkdwn that a template produced to at most n
// characters, ending with "…" when it cut, without splitting a <…> token
// or an entity (&amp;).
func truncateMarkup(s string, n int) string {
	if runes(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	cut := tokenSafeCut(s, byteOffset(s, n-1))
	if amp := strings.LastIndexByte(s[:cut], '&'); amp >= 0 && cut-amp <= 4 && !strings.Contains(s[amp:cut], ";") {
		if semi := strings.IndexByte(s[amp:], ';'); semi > 0 && semi <= 5 {
			cut = amp
		}
	}
	return s[:cut] + "…"
}

func mrkdwn(s string) *goslack.TextBlockObject {
	return goslack.NewTextBlockObject(goslack.MarkdownType, s, false, false)
}

func mrkdwnSection(s string) *goslack.SectionBlock {
	return goslack.NewSectionBlock(mrkdwn(s), nil, nil)
}

func contextRunes(b *goslack.ContextBlock) int {
	n := 0
	for _, e := range b.ContextElements.Elements {
		if t, ok := e.(*goslack.TextBlockObject); ok {
			n += runes(t.Text)
		}
	}
	return n
}

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "```", "'''")

// codeSpan is s, cut to n characters, as an inline code span: a backtick
// in it would end the span (and three would open a code block), so it
// becomes an apostrophe.
func codeSpan(s string, n int) string {
	return "`" + Escape(truncate(strings.ReplaceAll(s, "`", "'"), n)) + "`"
}

// Escape makes user-provided text (labels, annotations) safe for Slack
// mrkdwn: &, < and > become entities, so that text cannot form links,
// mentions (<!channel>) or broken markup, and three backticks become three
// apostrophes, so that they cannot open a code block that swallows the rest
// of the message.
func Escape(s string) string { return mrkdwnEscaper.Replace(s) }

// truncate cuts s to at most n characters, ending with "…" when it cut.
func truncate(s string, n int) string {
	if runes(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	return string([]rune(s)[:n-1]) + "…"
}

// TruncateEscaped cuts text that Escape produced, possibly with mrkdwn
// markup around it (<url|text> links, <!date^…> tokens), to at most n
// characters, ending with "…" when it cut; it never cuts an entity (&amp;)
// or a <…> token in half.
func TruncateEscaped(s string, n int) string {
	if runes(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	cut := []rune(s)[:n-1]
	// In escaped text a '<' can only open markup: one that is not closed
	// within the cut goes, with all after it, rather than leave Slack a
	// link without its end (shown as raw text, its URL cut).
	if open := lastIndexRune(cut, '<'); open >= 0 && lastIndexRune(cut, '>') < open {
		cut = cut[:open]
	}
	if i := slices.Index(cut[max(0, len(cut)-4):], '&'); i >= 0 {
		start := max(0, len(cut)-4) + i
		if !slices.Contains(cut[start:], ';') {
			cut = cut[:start]
		}
	}
	return string(cut) + "…"
}

// truncateJoined joins parts with sep, dropping the parts that do not fit in
// n characters and saying how many were dropped.
func truncateJoined(parts []string, sep string, n int) string {
	var out string
	for i, p := range parts {
		next := p
		if out != "" {
			next = out + sep + p
		}
		// Unless this is the last part, keep room for the "+N" suffix.
		room := n
		if i < len(parts)-1 {
			room -= runes(sep) + 6
		}
		if runes(next) > room {
			suffix := fmt.Sprintf("+%d", len(parts)-i)
			if out == "" {
				return suffix
			}
			return out + sep + suffix
		}
		out = next
	}
	return out
}

func runes(s string) int { return utf8.RuneCountInString(s) }

// lastIndexRune is the index of the last r in rs, or -1.
func lastIndexRune(rs []rune, r rune) int {
	for i, c := range slices.Backward(rs) {
		if c == r {
			return i
		}
	}
	return -1
}

func byteOffset(s string, n int) int {
	i := 0
	for range n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return i
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sortedAlerts orders alerts firing first, then by start and fingerprint, so
// that the rendering is stable whatever order storage returns.
func sortedAlerts(alerts []incident.Alert) []incident.Alert {
	out := slices.Clone(alerts)
	slices.SortStableFunc(out, func(a, b incident.Alert) int {
		return cmp.Or(
			cmp.Compare(boolInt(a.Status != incident.StatusFiring), boolInt(b.Status != incident.StatusFiring)),
			a.StartsAt.Compare(b.StartsAt),
			cmp.Compare(a.Fingerprint, b.Fingerprint),
		)
	})
	return out
}

func splitAlerts(alerts []incident.Alert) (firing, resolved []incident.Alert) {
	for _, a := range alerts {
		if a.Status == incident.StatusFiring {
			firing = append(firing, a)
		} else {
			resolved = append(resolved, a)
		}
	}
	return firing, resolved
}

func countStatus(alerts []incident.Alert, status string) int {
	n := 0
	for _, a := range alerts {
		if a.Status == status {
			n++
		}
	}
	return n
}

func appendNonEmpty(list []string, s string) []string {
	if s == "" {
		return list
	}
	return append(list, s)
}

// slackDate renders t in each reader's time zone, with a UTC fallback.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

// HumanDuration is "45s", "27m", "1h 23m" or "2d 3h": how long an incident
// lasted, as people say it.
func HumanDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(max(d, 0).Round(time.Second).Seconds()))
	}
	d = d.Round(time.Minute)
	days, hours, mins := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	default:
		return fmt.Sprintf("%dm", mins)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
