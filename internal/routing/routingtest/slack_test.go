package routingtest_test

import (
	"errors"
	"strings"
	"testing"

	goslack "github.com/slack-go/slack"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/routing/routingtest"
)

const slackToken = "xoxb-fake-token" //nolint:gosec // a test token the fake accepts

func section(text string) goslack.Block {
	return goslack.NewSectionBlock(goslack.NewTextBlockObject(goslack.MarkdownType, text, false, false), nil, nil)
}

func TestFakeSlack_Messages(t *testing.T) {
	t.Parallel()
	f := routingtest.NewFakeSlack(t, slackToken)
	api := goslack.New(slackToken, goslack.OptionAPIURL(f.URL()))
	ctx := t.Context()

	ch, ts, err := api.PostMessageContext(ctx, "#team-a", goslack.MsgOptionText("hello", false), goslack.MsgOptionBlocks(section("*hello*")))
	require.NoError(t, err)
	require.Equal(t, "C0TEAMA", ch)
	ch2, ts2, err := api.PostMessageContext(ctx, "#teama", goslack.MsgOptionText("other", false))
	require.NoError(t, err)
	require.Equal(t, "C0TEAMA2", ch2, "names that map to the same ID get distinct IDs")
	require.Greater(t, ts2, ts)

	_, _, err = api.PostMessageContext(ctx, ch, goslack.MsgOptionText("in thread", false), goslack.MsgOptionTS(ts))
	require.NoError(t, err)
	_, _, _, err = api.UpdateMessageContext(ctx, ch, ts, goslack.MsgOptionText("updated", false))
	require.NoError(t, err)

	msgs := f.Messages(ch)
	require.Len(t, msgs, 1)
	require.Equal(t, "updated", msgs[0].Text)
	require.Empty(t, msgs[0].Blocks, "an update with text alone clears the blocks, as Slack does")
	require.Equal(t, 1, msgs[0].Updates)
	require.Len(t, msgs[0].Replies, 1)
	require.Equal(t, ts, msgs[0].Replies[0].ThreadTS)

	link, err := api.GetPermalinkContext(ctx, &goslack.PermalinkParameters{Channel: ch, Ts: ts})
	require.NoError(t, err)
	require.Equal(t, "https://fake.slack.com/archives/C0TEAMA/p"+strings.ReplaceAll(ts, ".", ""), link)

	require.Len(t, f.Calls(routingtest.SlackPostMessage), 3)
	require.Len(t, f.Calls(""), 5)
}

func TestFakeSlack_Errors(t *testing.T) {
	t.Parallel()
	tooMany := make([]goslack.Block, 51)
	for i := range tooMany {
		tooMany[i] = goslack.NewDividerBlock()
	}
	tests := []struct {
		name   string
		token  string
		call   func(api *goslack.Client) error
		script *routingtest.SlackResponse
		want   string
	}{
		{name: "wrong token", token: "xoxb-wrong", want: "invalid_auth", call: func(api *goslack.Client) error {
			_, _, err := api.PostMessage("#incidents", goslack.MsgOptionText("x", false))
			return err
		}},
		{name: "update by name", want: "channel_not_found", call: func(api *goslack.Client) error {
			_, _, _, err := api.UpdateMessage("#incidents", "1.1", goslack.MsgOptionText("x", false))
			return err
		}},
		{name: "update of an unknown ts", want: "message_not_found", call: func(api *goslack.Client) error {
			ch, _, err := api.PostMessage("#incidents", goslack.MsgOptionText("x", false))
			if err != nil {
				return err
			}
			_, _, _, err = api.UpdateMessage(ch, "1.1", goslack.MsgOptionText("x", false))
			return err
		}},
		{name: "unknown channel ID", want: "channel_not_found", call: func(api *goslack.Client) error {
			_, _, err := api.PostMessage("C0NOPE", goslack.MsgOptionText("x", false))
			return err
		}},
		{name: "section text over 3000", want: "invalid_blocks", call: func(api *goslack.Client) error {
			_, _, err := api.PostMessage("#incidents", goslack.MsgOptionBlocks(section(strings.Repeat("x", 3001))))
			return err
		}},
		{name: "51 blocks", want: "invalid_blocks", call: func(api *goslack.Client) error {
			_, _, err := api.PostMessage("#incidents", goslack.MsgOptionBlocks(tooMany...))
			return err
		}},
		{name: "scripted ok:false", script: &routingtest.SlackResponse{Error: "not_in_channel"}, want: "not_in_channel", call: func(api *goslack.Client) error {
			_, _, err := api.PostMessage("#incidents", goslack.MsgOptionText("x", false))
			return err
		}},
		{name: "scripted 429", script: &routingtest.SlackResponse{Status: 429, RetryAfter: 3}, want: "retry after 3s", call: func(api *goslack.Client) error {
			_, _, err := api.PostMessage("#incidents", goslack.MsgOptionText("x", false))
			var rl *goslack.RateLimitedError
			if !errors.As(err, &rl) {
				return errors.New("not a RateLimitedError")
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := routingtest.NewFakeSlack(t, slackToken)
			if tt.script != nil {
				f.FailNext(routingtest.SlackPostMessage, 1, *tt.script)
			}
			tok := slackToken
			if tt.token != "" {
				tok = tt.token
			}
			err := tt.call(goslack.New(tok, goslack.OptionAPIURL(f.URL())))
			require.ErrorContains(t, err, tt.want)
		})
	}
}
