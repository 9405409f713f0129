package slack_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/routing/routingtest"
	"github.com/responder/responder/internal/routing/slack"
)

// fakeEpoch is before the first ts FakeSlack assigns.
var fakeEpoch = time.Now().Add(-time.Hour)

func TestNotifier_FindPostedAfterLostAnswer(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{})
	ctx := t.Context()

	// Other messages of ours and of others are in the channel; the search
	// goes over pages.
	for i := range 5 {
		_, _, err := n.PostParent(ctx, "#incidents", loadIncident(t, "firing"), slack.Extra{Key: fmt.Sprintf("other-%d", i)})
		require.NoError(t, err)
	}
	fake.FailNext(routingtest.SlackPostMessage, 1, routingtest.SlackResponse{Lost: true})
	_, retry, err := n.PostParent(ctx, "#incidents", loadIncident(t, "firing"), slack.Extra{Key: "delivery-7"})
	require.Error(t, err, "the answer was lost")
	require.True(t, retry, "a lost answer is worth retrying")
	for range 250 {
		_, _, err := n.Reply(ctx, slack.Ref{Channel: "C0INCIDENTS", TS: fake.Messages("C0INCIDENTS")[0].TS}, "noise")
		require.NoError(t, err)
	}
	for i := range 230 {
		_, _, err := n.PostParent(ctx, "#incidents", loadIncident(t, "firing"), slack.Extra{Key: fmt.Sprintf("later-%d", i)})
		require.NoError(t, err)
	}
	msgs := fake.Messages("C0INCIDENTS")
	require.Len(t, msgs, 236, "the lost post went through")
	lost := msgs[5]

	// A fresh notifier (a restart) knows the channel only by name.
	n2 := newNotifier(t, fake.URL(), slack.Options{})
	ref, found, retry, err := n2.FindPosted(ctx, "#incidents", "delivery-7", fakeEpoch)
	require.NoError(t, err)
	require.False(t, retry)
	require.True(t, found)
	require.Equal(t, slack.Ref{Channel: "C0INCIDENTS", TS: lost.TS, Permalink: ref.Permalink}, ref)
	require.NotEmpty(t, ref.Permalink)
	require.Len(t, fake.Calls(routingtest.SlackList), 1, "the name was resolved once")
	require.Len(t, fake.Calls(routingtest.SlackHistory), 2, "the post is on the second page")

	_, found, _, err = n2.FindPosted(ctx, "#incidents", "delivery-8", fakeEpoch)
	require.NoError(t, err)
	require.False(t, found, "a key never posted is not found")
	require.Len(t, fake.Calls(routingtest.SlackList), 1, "the channel ID is remembered")

	_, found, _, err = n2.FindPosted(ctx, "#incidents", "delivery-7", time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.False(t, found, "posts before since are not searched")
}

func TestNotifier_FindPostedErrors(t *testing.T) {
	t.Parallel()
	fake := routingtest.NewFakeSlack(t, token)
	n := newNotifier(t, fake.URL(), slack.Options{})
	ctx := t.Context()

	_, found, retry, err := n.FindPosted(ctx, "#nowhere", "k", fakeEpoch)
	require.Error(t, err)
	require.False(t, found)
	require.False(t, retry, "an unknown channel stays unknown")

	fake.AddChannel("#ops")
	fake.FailNext(routingtest.SlackHistory, 1, routingtest.SlackResponse{Status: 503})
	_, _, retry, err = n.FindPosted(ctx, "#ops", "k", fakeEpoch)
	require.Error(t, err)
	require.True(t, retry, "a 5xx is retried")

	fake.FailNext(routingtest.SlackHistory, 1, routingtest.SlackResponse{Error: "missing_scope"})
	_, _, retry, err = n.FindPosted(ctx, "#ops", "k", fakeEpoch)
	require.ErrorContains(t, err, "missing_scope")
	require.False(t, retry)
	require.Equal(t, "missing_scope", slack.ErrorCode(err))
	require.NotContains(t, err.Error(), token)
}
