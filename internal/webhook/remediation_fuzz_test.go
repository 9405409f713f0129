package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
)

// decidedRuns records the decisions the Slack handler takes. A run ID that
// is a multiple of 1000 is refused as already decided.
type decidedRuns struct {
	mu  sync.Mutex
	got []string
}

func (d *decidedRuns) Pause(_ context.Context, _ bool, by string) (string, error) { return by, nil }

func (d *decidedRuns) Decide(_ context.Context, runID int64, user string, approve bool) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, decisionText(runID, user, approve))
	if runID%1000 == 0 {
		return "", &incident.Error{Kind: incident.Conflict, Code: "decided", Msg: "run already decided"}
	}
	return "run " + strconv.FormatInt(runID, 10) + " decided", nil
}

func (d *decidedRuns) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	got := d.got
	d.got = nil
	return got
}

func decisionText(runID int64, user string, approve bool) string {
	return strconv.FormatInt(runID, 10) + " " + user + " " + strconv.FormatBool(approve)
}

var _ Remediation = (*decidedRuns)(nil)

// How a fuzzed Slack request is signed.
const (
	signValid         = iota // signed with the server's secret
	signOtherSecret          // signed with another secret
	signOtherBody            // signed over another body
	signNoSignature          // no X-Slack-Signature
	signNoTimestamp          // no X-Slack-Request-Timestamp
	signOtherVersion         // a valid signature labelled v1=
	signTruncated            // a valid signature missing its last hex digit
	signNoSecret             // the server has no signing secret
	signNoRemediation        // valid, but the server has no remediation
	signModes
)

// slackInteractionSeeds are interaction bodies as Slack sends them, and
// broken ones.
func slackInteractionSeeds() []string {
	form := func(payload string) string { return "payload=" + url.QueryEscape(payload) }
	action := func(id, value string) string { return `{"action_id":"` + id + `","value":"` + value + `"}` }
	click := func(actions ...string) string {
		return form(`{"type":"block_actions","user":{"id":"U1"},"actions":[` + strings.Join(actions, ",") + `]}`)
	}
	return []string{
		click(action(ActionApprove, "7")),
		click(action(ActionReject, "12")),
		click(action(ActionApprove, "7"), action("other", "x"), action(ActionReject, "8")),
		click(action(ActionApprove, "7"), action(ActionReject, "x"), action(ActionApprove, "9")),
		click(action(ActionApprove, "2000")),
		click(action(ActionApprove, "0")),
		click(action(ActionApprove, "-3")),
		click(action(ActionApprove, "+7")),
		click(action(ActionApprove, "9223372036854775808")),
		click(),
		form(`{"type":"block_actions","user":{"id":""},"actions":[` + action(ActionApprove, "7") + `]}`),
		form(`{"type":"view_submission","user":{"id":"U1"}}`),
		form(`{"TYPE":"block_actions","User":{"ID":"U1"},"actions":[` + action(ActionApprove, "7") + `]}`),
		form(`null`),
		form(`{"type":"block_actions","user":{"id":"U1"},"actions":{}}`),
		form(`{`),
		"",
		"payload=",
		"payload=%zz",
		"a=1;payload=2",
		"token=x&" + click(action(ActionApprove, "5")),
		click(action(ActionApprove, "5")) + "&payload=" + url.QueryEscape(`{}`),
	}
}

// FuzzSlackInteractions sends fuzzed interaction bodies, signed in each
// of the ways signModes lists, through the whole server. A request that is
// not validly signed within five minutes is refused with 401 before
// anything is decided; a body over 1 MiB gets 413. A validly signed one
// never gets a 5xx: a malformed form or payload, or an action value that
// is not a run ID, gets 400, anything else is decided exactly as
// parseInteraction reads it, in order, and answered 200 (or the decision's
// own error). parseInteraction's reading survives a round trip through a
// body built from it.
//
//	go test -run='^$' -fuzz='^FuzzSlackInteractions$' -fuzztime=60s ./internal/webhook/
func FuzzSlackInteractions(f *testing.F) {
	for i, s := range slackInteractionSeeds() {
		f.Add([]byte(s), uint8(i%signModes), int64(0))
		f.Add([]byte(s), uint8(signValid), int64(-300+i))
	}
	for _, skew := range []int64{-301, 301, 300, -300, math.MaxInt64, math.MinInt64} {
		f.Add([]byte(slackInteractionSeeds()[0]), uint8(signValid), skew)
	}

	const secret = incident.Secret("signing-secret")
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	rem := &decidedRuns{}
	logger := slog.New(slog.DiscardHandler)
	base := Options{Remediation: rem, SlackSigningSecret: func() incident.Secret { return secret }, Now: func() time.Time { return now }}
	signed := NewServer(logger, nil, base)
	noSecret := base
	noSecret.SlackSigningSecret = nil
	unsigned := NewServer(logger, nil, noSecret)
	noRemediation := base
	noRemediation.Remediation = nil
	withoutRemediation := NewServer(logger, nil, noRemediation)

	f.Fuzz(func(t *testing.T, body []byte, mode uint8, skew int64) {
		mode %= signModes
		ts := now.Unix() + skew // wraps for huge skews, far from now either way
		sig := SignSlackRequest(secret, ts, body)
		srv := signed
		switch mode {
		case signOtherSecret:
			sig = SignSlackRequest("other-secret", ts, body)
		case signOtherBody:
			sig = SignSlackRequest(secret, ts, append(body[:len(body):len(body)], 'x'))
		case signNoSignature:
			sig = ""
		case signOtherVersion:
			sig = "v1=" + strings.TrimPrefix(sig, "v0=")
		case signTruncated:
			sig = sig[:len(sig)-1]
		case signNoSecret:
			srv, sig = unsigned, SignSlackRequest("", ts, body)
		case signNoRemediation:
			srv = withoutRemediation
		}
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/slack/interactions", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if mode != signNoTimestamp {
			req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
		}
		if sig != "" {
			req.Header.Set("X-Slack-Signature", sig)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		decided := rem.take()
		var reply errorBody
		if rec.Code != http.StatusOK {
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &reply), "status %d body %q", rec.Code, rec.Body.String())
		}
		require.Less(t, rec.Code, 500, "body %q", rec.Body.String())

		if len(body) > maxInteractionBody {
			require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
			require.Empty(t, decided)
			return
		}
		fresh := skew >= -300 && skew <= 300
		if !fresh || (mode != signValid && mode != signNoRemediation) {
			require.Equal(t, http.StatusUnauthorized, rec.Code, "mode %d skew %d: %s", mode, skew, rec.Body.String())
			require.Equal(t, "bad_signature", reply.Code)
			require.Empty(t, decided, "decided on a request that is not validly signed")
			return
		}
		if mode == signNoRemediation {
			require.Equal(t, http.StatusNotFound, rec.Code)
			require.Equal(t, "no_remediation", reply.Code)
			return
		}

		in, perr := parseInteraction(body)
		checkInteraction(t, in, perr)
		if in.User == "" {
			require.Empty(t, decided)
			if perr != nil {
				require.Equal(t, http.StatusBadRequest, rec.Code)
				require.Equal(t, codeOf(perr), reply.Code)
				return
			}
			require.Equal(t, http.StatusOK, rec.Code)
			require.Empty(t, rec.Body.String())
			return
		}
		// Decisions are taken in order until one fails.
		var want, msgs []string
		failed := false
		for _, d := range in.Decisions {
			want = append(want, decisionText(d.RunID, in.User, d.Approve))
			if d.RunID%1000 == 0 {
				failed = true
				break
			}
			msgs = append(msgs, "run "+strconv.FormatInt(d.RunID, 10)+" decided")
		}
		require.Equal(t, want, decided)
		switch {
		case failed:
			require.Equal(t, http.StatusConflict, rec.Code)
			require.Equal(t, "decided", reply.Code)
		case perr != nil:
			require.Equal(t, http.StatusBadRequest, rec.Code)
			require.Equal(t, "bad_action", reply.Code)
		default:
			require.Equal(t, http.StatusOK, rec.Code)
			var ok struct {
				Text string `json:"text"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &ok))
			require.Equal(t, strings.Join(msgs, "\n"), ok.Text)
		}
	})
}

// checkInteraction checks what parseInteraction read from a body: only a
// contract error, decisions only for a user and only on positive run IDs,
// and the same reading from a body built from it.
func checkInteraction(t *testing.T, in interaction, err error) {
	t.Helper()
	if err != nil {
		require.Equal(t, incident.Invalid, incident.KindOf(err))
		require.Contains(t, []string{"malformed_form", "malformed_payload", "bad_action"}, codeOf(err))
		if codeOf(err) != "bad_action" {
			require.Equal(t, interaction{}, in)
		}
	}
	if in.User == "" {
		require.Empty(t, in.Decisions)
		return
	}
	type action struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	}
	p := map[string]any{"type": "block_actions", "user": map[string]string{"id": in.User}}
	actions := []action{}
	for _, d := range in.Decisions {
		require.Positive(t, d.RunID)
		id := ActionReject
		if d.Approve {
			id = ActionApprove
		}
		actions = append(actions, action{ActionID: id, Value: strconv.FormatInt(d.RunID, 10)})
	}
	p["actions"] = actions
	b, jerr := json.Marshal(p)
	require.NoError(t, jerr)
	again, aerr := parseInteraction([]byte(url.Values{"payload": {string(b)}}.Encode()))
	require.NoError(t, aerr)
	require.Equal(t, in, again)
}

func codeOf(err error) string {
	var ie *incident.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

// FuzzVerifySlackSignature fuzzes the two headers and the body. With a
// signature computed over the raw timestamp text, the request verifies
// exactly when that text is a base-10 integer within five minutes of now;
// any other signature verifies only when it is that same signature; and
// nothing verifies without a secret.
//
//	go test -run='^$' -fuzz='^FuzzVerifySlackSignature$' -fuzztime=60s ./internal/webhook/
func FuzzVerifySlackSignature(f *testing.F) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	unix := now.Unix()
	for _, ts := range []string{
		strconv.FormatInt(unix, 10), strconv.FormatInt(unix-300, 10), strconv.FormatInt(unix-301, 10), strconv.FormatInt(unix+301, 10),
		"+" + strconv.FormatInt(unix, 10), "0" + strconv.FormatInt(unix, 10), "-" + strconv.FormatInt(unix, 10),
		"", " " + strconv.FormatInt(unix, 10), "1.7e9", "0x6925", "1_764", "9223372036854775807", "-9223372036854775808", "99999999999999999999",
	} {
		f.Add(ts, []byte("payload=%7B%7D"), "")
	}
	f.Add(strconv.FormatInt(unix, 10), []byte(""), "v0=")
	f.Add(strconv.FormatInt(unix, 10), []byte("x"), "v0=zz")
	f.Add(strconv.FormatInt(unix, 10), []byte("x"), SignSlackRequest("signing-secret", unix, []byte("x")))
	f.Add(strconv.FormatInt(unix, 10), []byte("x"), strings.ToUpper(SignSlackRequest("signing-secret", unix, []byte("x"))))

	const secret = incident.Secret("signing-secret")
	lo, hi := big.NewInt(unix-300), big.NewInt(unix+300)
	f.Fuzz(func(t *testing.T, tsText string, body []byte, forged string) {
		mac := hmac.New(sha256.New, []byte(secret.Value()))
		mac.Write([]byte("v0:" + tsText + ":"))
		mac.Write(body)
		valid := "v0=" + hex.EncodeToString(mac.Sum(nil))
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", tsText)
		h.Set("X-Slack-Signature", valid)

		ts, isInt := new(big.Int).SetString(tsText, 10)
		fresh := isInt && ts.Cmp(lo) >= 0 && ts.Cmp(hi) <= 0
		require.Equal(t, fresh, VerifySlackSignature(secret, h, body, now), "timestamp %q", tsText)
		require.False(t, VerifySlackSignature("", h, body, now))

		h.Set("X-Slack-Signature", forged)
		if VerifySlackSignature(secret, h, body, now) {
			require.True(t, strings.EqualFold(forged, valid), "verified signature %q, want %q", forged, valid)
			require.True(t, strings.HasPrefix(forged, "v0="))
		}
		empty := hmac.New(sha256.New, nil)
		empty.Write([]byte("v0:" + tsText + ":"))
		empty.Write(body)
		h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(empty.Sum(nil)))
		require.False(t, VerifySlackSignature("", h, body, now), "verified without a secret")
	})
}
