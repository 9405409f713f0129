package slack

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	goslack "github.com/slack-go/slack"
)

// MetadataEventType is the metadata event type of the messages responder
// posts with a key (Extra.Key), by which FindPosted finds them again.
const MetadataEventType = "responder_message"

// metadataKey is the event payload field that carries the key.
const metadataKey = "key"

// Bounds of a FindPosted search: Slack answers at most 1,000 messages a
// page; 200 keeps each answer small. A channel that got more than 2,000
// messages since the post is searched no further.
const (
	historyPageSize = 200
	historyMaxPages = 10
	listPageSize    = 200
	listMaxPages    = 50
)

// channelIDPattern matches Slack conversation IDs (public and private
// channels, direct messages): upper case, unlike channel names.
var channelIDPattern = regexp.MustCompile(`^[CGD][A-Z0-9]{2,}$`)

// errChannelNotFound says that no channel of that name is visible to the
// bot.
var errChannelNotFound = errors.New("channel not found among the bot's conversations")

// FindPosted looks for the message that was posted to channel with key
// (Extra.Key) at or after since, for the case where a post's answer was
// lost (a timeout, a dropped connection, a crash before its ts was stored):
// Slack has no idempotency key, so before posting again the caller checks
// whether the first post went through. It searches the channel's history
// (conversations.history with include_all_metadata; a channel name is
// resolved with conversations.list), which needs the channels:history and
// channels:read scopes (groups:* for private channels).
//
// found is false when no such message is in the channel's recent history;
// retry tells whether a failed search is worth repeating.
func (n *Notifier) FindPosted(ctx context.Context, channel, key string, since time.Time) (ref Ref, found, retry bool, err error) {
	op := fmt.Sprintf("look for an earlier post to %s", channel)
	if channel == "" || key == "" {
		return Ref{}, false, false, fmt.Errorf("%s: %w", op, errMissingArgument)
	}
	id, retry, err := n.resolveChannel(ctx, channel)
	if err != nil {
		return Ref{}, false, retry, fmt.Errorf("%s: %w", op, err)
	}
	params := &goslack.GetConversationHistoryParameters{
		ChannelID:          id,
		Oldest:             slackTS(since),
		Inclusive:          true,
		Limit:              historyPageSize,
		IncludeAllMetadata: true,
	}
	for range historyMaxPages {
		resp, err := n.api.GetConversationHistoryContext(ctx, params)
		if err != nil {
			retry, err := n.classify(ctx, "", op, err)
			return Ref{}, false, retry, err
		}
		for _, m := range resp.Messages {
			if m.Metadata.EventType != MetadataEventType || m.ThreadTimestamp != "" && m.ThreadTimestamp != m.Timestamp {
				continue
			}
			if k, _ := m.Metadata.EventPayload[metadataKey].(string); k == key {
				ref := Ref{Channel: id, TS: m.Timestamp}
				link, err := n.api.GetPermalinkContext(ctx, &goslack.PermalinkParameters{Channel: id, Ts: m.Timestamp})
				if err != nil {
					_, err = n.classify(ctx, "", "get slack permalink", err)
					n.logger.WarnContext(ctx, "get slack permalink failed, the message was found without it", "channel", id, "ts", m.Timestamp, "err", err)
				}
				ref.Permalink = link
				return ref, true, false, nil
			}
		}
		if !resp.HasMore || resp.ResponseMetaData.NextCursor == "" {
			return Ref{}, false, false, nil
		}
		params.Cursor = resp.ResponseMetaData.NextCursor
	}
	n.logger.WarnContext(ctx, "slack channel history is too long to search for an earlier post; it counts as not posted", "channel", id, "pages", historyMaxPages)
	return Ref{}, false, false, nil
}

// resolveChannel returns the ID of a channel given by name or ID.
func (n *Notifier) resolveChannel(ctx context.Context, channel string) (string, bool, error) {
	if id, ok := n.channels.Load(channel); ok {
		return id.(string), false, nil
	}
	if channelIDPattern.MatchString(channel) {
		return channel, false, nil
	}
	name := strings.TrimPrefix(channel, "#")
	params := &goslack.GetConversationsParameters{
		Limit: listPageSize, ExcludeArchived: true, Types: []string{"public_channel", "private_channel"},
	}
	for range listMaxPages {
		chans, next, err := n.api.GetConversationsContext(ctx, params)
		if err != nil {
			return n.classifyResolve(ctx, err)
		}
		for _, c := range chans {
			if c.Name == name {
				n.learnChannel(channel, c.ID)
				return c.ID, false, nil
			}
		}
		if next == "" {
			break
		}
		params.Cursor = next
	}
	return "", false, errChannelNotFound
}

func (n *Notifier) classifyResolve(ctx context.Context, err error) (string, bool, error) {
	retry, err := n.classify(ctx, "", "list slack channels", err)
	return "", retry, err
}

// learnChannel records that channel (a name) is the channel with that ID.
// From then on the name paces as its ID: the slots reserved under the name
// carry over. Later posts reserve their slots when they wait, not when
// Slack answers, so a slow answer does not stretch the interval.
func (n *Notifier) learnChannel(channel, id string) {
	if id == "" || id == channel {
		return
	}
	if _, known := n.channels.LoadOrStore(channel, id); !known {
		n.pacer.Carry(channel, id)
	}
}

// slackTS formats t as a Slack timestamp ("1700000000.000100").
func slackTS(t time.Time) string {
	return fmt.Sprintf("%d.%06d", t.Unix(), t.Nanosecond()/1000)
}
