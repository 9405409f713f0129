package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/responder/responder/internal/incident"
)

// Remediation takes the decisions people make about remediation.
type Remediation interface {
	// Pause stops (paused true) or resumes all remediation, durably, and
	// returns who the state is recorded as set by: a pause while paused
	// keeps the first pauser's name.
	Pause(ctx context.Context, paused bool, by string) (string, error)
	// Decide applies a Slack user's approval or rejection of a run and
	// returns what happened, in words. Who may decide is Decide's business.
	Decide(ctx context.Context, runID int64, user string, approve bool) (string, error)
}

// The action IDs of the Approve and Reject buttons; their value is the run
// ID.
const (
	ActionApprove = "remediation_approve"
	ActionReject  = "remediation_reject"
)

// slackMaxSkew is how far a Slack request's timestamp may be from now.
const slackMaxSkew = 5 * time.Minute

// maxInteractionBody caps a Slack interaction payload.
const maxInteractionBody = 1 << 20

var errBadSignature = &incident.Error{Kind: incident.Unauthorized, Code: "bad_signature", Msg: "missing, stale or invalid slack signature"}

// handleSlackInteractions verifies the Slack signing secret on every
// request before reading anything from it, then applies Approve and Reject
// clicks.
func handleSlackInteractions(opts Options, m *metrics) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		body, err := io.ReadAll(io.LimitReader(req.Body, maxInteractionBody+1))
		if err != nil {
			return &incident.Error{Kind: incident.Invalid, Code: "unreadable_body", Msg: "cannot read request body"}
		}
		if len(body) > maxInteractionBody {
			return &incident.Error{Kind: incident.TooLarge, Code: "too_large", Msg: "interaction payload too large"}
		}
		var secret incident.Secret
		if opts.SlackSigningSecret != nil {
			secret = opts.SlackSigningSecret()
		}
		if !VerifySlackSignature(secret, req.Header, body, opts.Now()) {
			m.rejected.WithLabelValues("bad_signature").Inc()
			return errBadSignature
		}
		if opts.Remediation == nil {
			return &incident.Error{Kind: incident.NotFound, Code: "no_remediation", Msg: "remediation is not available"}
		}
		in, perr := parseInteraction(body)
		if in.User == "" {
			if perr != nil {
				return perr
			}
			return c.NoContent(http.StatusOK)
		}
		var msgs []string
		for _, d := range in.Decisions {
			// The decision must not depend on Slack waiting for the answer.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), 5*time.Second)
			msg, err := opts.Remediation.Decide(ctx, d.RunID, in.User, d.Approve)
			cancel()
			if err != nil {
				return err
			}
			msgs = append(msgs, msg)
		}
		// A click whose value is not a run ID is refused after the ones
		// before it were decided.
		if perr != nil {
			return perr
		}
		return c.JSON(http.StatusOK, map[string]any{"response_type": "ephemeral", "replace_original": false, "text": strings.Join(msgs, "\n")})
	}
}

// interaction is what a verified Slack interaction request asks of
// responder.
type interaction struct {
	// User is the Slack user who clicked; empty when the request is not a
	// block_actions click by a user, which responder ignores.
	User string
	// Decisions are the Approve and Reject clicks, in order.
	Decisions []decision
}

// decision is one Approve or Reject click.
type decision struct {
	RunID   int64
	Approve bool
}

// parseInteraction reads an interaction request body: a form whose payload
// field is Slack's JSON. Actions other than Approve and Reject are skipped.
// When an Approve or Reject value is not a run ID, it returns the decisions
// before it along with the error, and the handler applies those first.
func parseInteraction(body []byte) (interaction, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return interaction{}, &incident.Error{Kind: incident.Invalid, Code: "malformed_form", Msg: "malformed form body"}
	}
	var p interactionPayload
	if err := json.Unmarshal([]byte(form.Get("payload")), &p); err != nil {
		return interaction{}, &incident.Error{Kind: incident.Invalid, Code: "malformed_payload", Msg: "malformed interaction payload"}
	}
	if p.Type != "block_actions" || p.User.ID == "" {
		return interaction{}, nil
	}
	in := interaction{User: p.User.ID}
	for _, a := range p.Actions {
		if a.ActionID != ActionApprove && a.ActionID != ActionReject {
			continue
		}
		id, err := strconv.ParseInt(a.Value, 10, 64)
		if err != nil || id <= 0 {
			return in, &incident.Error{Kind: incident.Invalid, Code: "bad_action", Msg: "action value is not a run ID"}
		}
		in.Decisions = append(in.Decisions, decision{RunID: id, Approve: a.ActionID == ActionApprove})
	}
	return in, nil
}

// interactionPayload is the part of a block_actions payload responder reads.
type interactionPayload struct {
	Type string `json:"type"`
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	Actions []struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	} `json:"actions"`
}

// VerifySlackSignature checks Slack's v0 request signature: the HMAC-SHA256
// of "v0:{timestamp}:{body}" under the signing secret, with the timestamp no
// more than 5 minutes from now. An empty secret verifies nothing.
func VerifySlackSignature(secret incident.Secret, h http.Header, body []byte, now time.Time) bool {
	if secret == "" {
		return false
	}
	tsText := h.Get("X-Slack-Request-Timestamp")
	sig := h.Get("X-Slack-Signature")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || !strings.HasPrefix(sig, "v0=") {
		return false
	}
	if d := now.Sub(time.Unix(ts, 0)); d > slackMaxSkew || d < -slackMaxSkew {
		return false
	}
	got, err := hex.DecodeString(strings.TrimPrefix(sig, "v0="))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret.Value()))
	mac.Write([]byte("v0:" + tsText + ":"))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// SignSlackRequest returns the X-Slack-Signature of body at ts, as Slack
// computes it; tests and tools use it to sign requests.
func SignSlackRequest(secret incident.Secret, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret.Value()))
	mac.Write([]byte("v0:" + strconv.FormatInt(ts, 10) + ":"))
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// handlePause pauses or resumes all remediation. The optional JSON body
// says who asks and why ({"by": "...", "comment": "..."}), as an
// Alertmanager silence has createdBy and comment: recorded as said, since
// the API's one credential cannot tell people apart; "api" without it.
func handlePause(logger *slog.Logger, opts Options, paused bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		if opts.Remediation == nil {
			return &incident.Error{Kind: incident.NotFound, Code: "no_remediation", Msg: "remediation is not available"}
		}
		by, err := pauseBy(c.Request().Body)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 5*time.Second)
		defer cancel()
		by, err = opts.Remediation.Pause(ctx, paused, by)
		if err != nil {
			if incident.KindOf(err) == incident.Internal {
				return notCommitted(logger, c, err)
			}
			return err
		}
		state := "resumed"
		if paused {
			state = "paused"
		}
		return c.JSON(http.StatusOK, map[string]string{"status": state, "by": by})
	}
}

// Bounds of a pause request's body and fields.
const (
	maxPauseBody    = 4 << 10
	maxPauseBy      = 64
	maxPauseComment = 256
)

// pauseBy reads a pause or resume request's optional body into the text
// recorded as who paused: "by (comment)".
func pauseBy(body io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(body, maxPauseBody+1))
	if err != nil {
		return "", err
	}
	bad := func(msg string) error {
		return &incident.Error{Kind: incident.Invalid, Code: "bad_pause_request", Msg: msg}
	}
	if len(b) > maxPauseBody {
		return "", bad("the body is larger than 4 KiB")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "api", nil
	}
	var req struct {
		By      string `json:"by"`
		Comment string `json:"comment"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		msg := `the body must be one object {"by": "...", "comment": "..."}, both optional strings`
		if _, field, ok := strings.Cut(fmt.Sprint(err), "unknown field "); ok {
			msg += "; unknown field " + field
		}
		return "", bad(msg)
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"by", req.By, maxPauseBy}, {"comment", req.Comment, maxPauseComment}} {
		// Format characters too: a right-to-left override would show the
		// text reversed in logs and Slack.
		if !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
			return "", bad(f.name + " must be printable text")
		}
		if utf8.RuneCountInString(f.v) > f.max {
			return "", bad(f.name + " must be at most " + strconv.Itoa(f.max) + " characters")
		}
	}
	by := strings.TrimSpace(req.By)
	if by == "" {
		by = "api"
	}
	if c := strings.TrimSpace(req.Comment); c != "" {
		by += " (" + c + ")"
	}
	return by, nil
}
