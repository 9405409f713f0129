package slack

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	goslack "github.com/slack-go/slack"
)

// Rendering choices for a storm digest.
const (
	maxDigestAlertnames = 10
	maxDigestIncidents  = 20
)

// Digest is what a storm's digest message shows: one message per storm on
// its channel instead of a parent message per incident.
type Digest struct {
	// StormID numbers the storm ("storm #3").
	StormID int64
	// Channel is the channel as configured ("#incidents").
	Channel   string
	StartedAt time.Time
	// EndedAt is set once the storm is over.
	EndedAt *time.Time
	// Incidents are the storm's incidents, newest first.
	Incidents []DigestIncident
	// Key, when set, is sent as the message's metadata (see FindPosted).
	Key string
}

// DigestIncident is one incident in a digest.
type DigestIncident struct {
	ID        int64
	Alertname string
	Summary   string
	Firing    bool
}

// Title is the digest's one-line summary, e.g. "[STORM] 57 incidents on
// #incidents"; PagerDuty's storm page uses it too.
func (d Digest) Title() string {
	n := len(d.Incidents)
	prefix := "[STORM]"
	if d.EndedAt != nil {
		prefix = "[STORM ENDED]"
	}
	return fmt.Sprintf("%s %d %s on %s", prefix, n, plural(n, "incident", "incidents"), d.Channel)
}

// TopAlertnames returns the alertnames of the digest's incidents with their
// counts, most frequent first, at most n of them.
func (d Digest) TopAlertnames(n int) []AlertnameCount {
	counts := map[string]int{}
	for _, inc := range d.Incidents {
		counts[inc.Alertname]++
	}
	out := make([]AlertnameCount, 0, len(counts))
	for name, c := range counts {
		out = append(out, AlertnameCount{Alertname: name, Count: c})
	}
	slices.SortFunc(out, func(a, b AlertnameCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Alertname, b.Alertname))
	})
	return out[:min(n, len(out))]
}

// AlertnameCount is an alertname and how many incidents of a digest have it.
type AlertnameCount struct {
	Alertname string
	Count     int
}

// PostDigest posts a storm's digest message to channel.
func (n *Notifier) PostDigest(ctx context.Context, channel string, d Digest) (Ref, bool, error) {
	msg := n.renderDigest(d)
	msg.Key = d.Key
	return n.post(ctx, "post slack storm digest to "+channel, channel, msg)
}

// UpdateDigest re-renders a storm's digest message in place.
func (n *Notifier) UpdateDigest(ctx context.Context, ref Ref, d Digest) (bool, error) {
	return n.update(ctx, fmt.Sprintf("update slack storm digest %s in %s", ref.TS, ref.Channel), ref, n.renderDigest(d))
}

// renderDigest builds a digest message: the count, the top alertnames with
// their counts, the most recent incidents with links, and "and N more".
func (n *Notifier) renderDigest(d Digest) message {
	title := truncate(d.Title(), maxHeaderText)
	firing := 0
	for _, inc := range d.Incidents {
		if inc.Firing {
			firing++
		}
	}
	state := fmt.Sprintf("*Storm #%d* on %s since %s: *%d new incidents* (%d firing, %d resolved), listed here instead of a message each.",
		d.StormID, Escape(d.Channel), slackDate(d.StartedAt), len(d.Incidents), firing, len(d.Incidents)-firing)
	if d.EndedAt != nil {
		state = fmt.Sprintf("*Storm #%d* on %s is over: %d new incidents from %s to %s (%d still firing). New incidents get their own messages again.",
			d.StormID, Escape(d.Channel), len(d.Incidents), slackDate(d.StartedAt), slackDate(*d.EndedAt), firing)
	}
	var top []string
	for _, a := range d.TopAlertnames(maxDigestAlertnames) {
		top = append(top, fmt.Sprintf("• %s × %d", codeLabel("alertname", a.Alertname), a.Count))
	}
	var recent []string
	for _, inc := range d.Incidents[:min(maxDigestIncidents, len(d.Incidents))] {
		name := fmt.Sprintf("#%d %s", inc.ID, Escape(truncate(inc.Alertname, maxLabelValue)))
		if u, ok := safeURL(fmt.Sprintf("%s/api/v1/incidents/%d", n.externalURL, inc.ID)); ok && n.externalURL != "" {
			name = fmt.Sprintf("<%s|%s>", u, name)
		}
		line := "• " + name
		if !inc.Firing {
			line += " (resolved)"
		}
		if inc.Summary != "" {
			line += ": " + Escape(truncate(inc.Summary, maxAlertSummary))
		}
		recent = append(recent, line)
	}
	if more := len(d.Incidents) - len(recent); more > 0 {
		recent = append(recent, fmt.Sprintf("_and %d more_", more))
	}
	blocks := []goslack.Block{
		goslack.NewHeaderBlock(goslack.NewTextBlockObject(goslack.PlainTextType, title, true, false)),
		mrkdwnSection(TruncateEscaped(state, maxSectionText)),
	}
	if len(top) > 0 {
		blocks = append(blocks, mrkdwnSection(truncateJoined(append([]string{"*Top alerts*"}, top...), "\n", maxSectionText)))
	}
	if len(recent) > 0 {
		blocks = append(blocks, mrkdwnSection(truncateJoined(append([]string{"*Most recent*"}, recent...), "\n", maxSectionText)))
	}
	blocks = append(blocks, goslack.NewContextBlock("", mrkdwn(fmt.Sprintf("Storm #%d · updated %s", d.StormID, slackDate(n.now())))))
	return message{Text: truncate(title, maxFallbackText), Blocks: blocks}
}

// post sends msg as a new message to channel and returns where it went.
func (n *Notifier) post(ctx context.Context, op, channel string, msg message) (Ref, bool, error) {
	if channel == "" {
		return Ref{}, false, fmt.Errorf("%s: %w", op, errMissingArgument)
	}
	key := n.channelKey(channel)
	if err := n.pacer.Wait(ctx, key); err != nil {
		return Ref{}, true, fmt.Errorf("%s: wait for channel rate limit: %w", op, err)
	}
	opts := []goslack.MsgOption{
		goslack.MsgOptionText(msg.Text, false),
		goslack.MsgOptionBlocks(msg.Blocks...),
		goslack.MsgOptionDisableLinkUnfurl(),
	}
	if msg.Key != "" {
		opts = append(opts, goslack.MsgOptionMetadata(goslack.SlackMetadata{
			EventType: MetadataEventType, EventPayload: map[string]any{metadataKey: msg.Key},
		}))
	}
	id, ts, err := n.api.PostMessageContext(ctx, channel, opts...)
	if err != nil {
		retry, err := n.classify(ctx, key, op, err)
		return Ref{}, retry, err
	}
	n.learnChannel(channel, id)
	ref := Ref{Channel: id, TS: ts}
	// The message is out: a failure from here on must not make the caller
	// post it again, so the permalink is best effort.
	link, err := n.api.GetPermalinkContext(ctx, &goslack.PermalinkParameters{Channel: id, Ts: ts})
	if err != nil {
		_, err = n.classify(ctx, id, "get slack permalink", err)
		n.logger.WarnContext(ctx, "get slack permalink failed, the message was posted without it", "channel", id, "ts", ts, "err", err)
	}
	ref.Permalink = link
	return ref, false, nil
}

// update re-renders the message at ref with msg.
func (n *Notifier) update(ctx context.Context, op string, ref Ref, msg message) (bool, error) {
	if ref.Channel == "" || ref.TS == "" {
		return false, fmt.Errorf("%s: %w", op, errMissingArgument)
	}
	if err := n.pacer.Wait(ctx, ref.Channel); err != nil {
		return true, fmt.Errorf("%s: wait for channel rate limit: %w", op, err)
	}
	if _, _, _, err := n.api.UpdateMessageContext(ctx, ref.Channel, ref.TS,
		goslack.MsgOptionText(msg.Text, false),
		goslack.MsgOptionBlocks(msg.Blocks...),
	); err != nil {
		return n.classify(ctx, ref.Channel, op, err)
	}
	return false, nil
}
