package routingtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	goslack "github.com/slack-go/slack"
)

// The Slack Web API methods FakeSlack implements, plus SlackUpload, the
// pseudo-method of the upload URL that files.getUploadURLExternal hands out.
const (
	SlackPostMessage      = "chat.postMessage"
	SlackUpdate           = "chat.update"
	SlackGetPermalink     = "chat.getPermalink"
	SlackGetUploadURL     = "files.getUploadURLExternal"
	SlackCompleteUpload   = "files.completeUploadExternal"
	SlackAuthTest         = "auth.test"
	SlackHistory          = "conversations.history"
	SlackList             = "conversations.list"
	SlackUpload           = "upload"
	slackUploadPathPrefix = "/upload/"
)

// Block Kit and message limits that FakeSlack enforces the way Slack does
// (docs.slack.dev/reference/block-kit/blocks), answering invalid_blocks.
const (
	slackMaxBlocks       = 50
	slackMaxSectionText  = 3000
	slackMaxHeaderText   = 150
	slackMaxFields       = 10
	slackMaxFieldText    = 2000
	slackMaxContextElems = 10
	slackMaxMessageText  = 40000
)

// SlackResponse scripts one answer of FakeSlack (see FailNext). The zero
// value is a normal answer.
type SlackResponse struct {
	// Status is the HTTP status to answer with; 0 means 200. A status other
	// than 200 is answered with a small HTML body, as Slack does for 5xx.
	Status int
	// RetryAfter, in seconds, sets the Retry-After header when positive.
	RetryAfter int
	// Error makes an HTTP 200 answer {"ok":false,"error":Error}.
	Error string
	// Delay holds the answer back (or until the client gives up); with the
	// other fields zero, the call then succeeds normally, only slowly.
	Delay time.Duration
	// Lost carries the call out (the message is posted) and then drops the
	// connection instead of answering: the caller cannot know it worked.
	Lost bool
	// ErrorAfter carries the call out and then answers
	// {"ok":false,"error":ErrorAfter}, as Slack may for internal_error and
	// fatal_error ("the request may have been partially completed").
	ErrorAfter string
}

// SlackCall is one request FakeSlack received, whatever it answered.
type SlackCall struct {
	Method string
	// ChannelArg is the channel as sent ("#incidents" or "C0INCIDENTS");
	// Channel is the ID it resolved to, or ChannelArg when it did not resolve.
	ChannelArg string
	Channel    string
	// TS is the timestamp assigned (chat.postMessage) or targeted
	// (chat.update, chat.getPermalink).
	TS       string
	ThreadTS string
	Text     string
	// BlocksJSON is the blocks form field as sent; Blocks is it decoded.
	BlocksJSON string
	Blocks     []goslack.Block
	// FileIDs are the files shared by files.completeUploadExternal, or the
	// file uploaded to the upload URL.
	FileIDs []string
	// Status and Error are what FakeSlack answered: the HTTP status, and the
	// Slack error string of an ok:false answer.
	Status int
	Error  string
}

// SlackMessage is the current state of one message in a fake channel.
type SlackMessage struct {
	Channel    string
	TS         string
	ThreadTS   string
	Text       string
	BlocksJSON string
	Blocks     []goslack.Block
	FileIDs    []string
	// Metadata is the message metadata as sent (JSON), "" for none.
	Metadata string
	// Updates counts the chat.update calls that changed this message.
	Updates int
	// Replies are the thread's messages, oldest first (parents only).
	Replies []SlackMessage
}

// FakeSlack is an httptest.Server that behaves like the parts of Slack's Web
// API that responder uses: it reads form-encoded requests, checks the bot
// token, resolves channel names to stable IDs ("#incidents" → "C0INCIDENTS"),
// assigns increasing ts values, validates Block Kit limits, keeps every
// channel's messages and threads, and records every call. Answers can be
// scripted with FailNext. It is safe for concurrent use.
type FakeSlack struct {
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	calls    []SlackCall
	script   map[string][]SlackResponse
	names    map[string]string // channel name without '#' → ID
	ids      map[string]bool
	parents  map[string][]*SlackMessage // channel ID → parents in post order
	byTS     map[string]*SlackMessage   // channel ID + "/" + ts → parent
	nextTS   int
	lastSec  int64
	started  map[string]int // method → requests received, answered or not
	nextFile int
	files    map[string][]byte // file ID → uploaded content (nil until uploaded)
}

// NewFakeSlack starts a FakeSlack that accepts token, and stops it when the
// test ends.
func NewFakeSlack(t testing.TB, token string) *FakeSlack {
	t.Helper()
	f := &FakeSlack{
		token:   token,
		script:  map[string][]SlackResponse{},
		names:   map[string]string{},
		ids:     map[string]bool{},
		parents: map[string][]*SlackMessage{},
		byTS:    map[string]*SlackMessage{},
		files:   map[string][]byte{},
		started: map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serveHTTP))
	t.Cleanup(f.srv.Close)
	return f
}

// URL returns the API base URL with its trailing "/", as slack-go's
// OptionAPIURL needs it.
func (f *FakeSlack) URL() string { return f.srv.URL + "/" }

// Close stops the server; later calls fail with connection errors.
func (f *FakeSlack) Close() { f.srv.Close() }

// FailNext scripts the next n calls of method (e.g. SlackPostMessage, or
// SlackUpload for the upload URL) to get resp instead of a normal answer.
// Scripts queue up: FailNext(m, 2, a) then FailNext(m, 1, b) answers a, a, b.
func (f *FakeSlack) FailNext(method string, n int, resp SlackResponse) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.script[method] = append(f.script[method], resp)
	}
}

// AddChannel registers a channel name (with or without '#') and returns its
// ID. Posting to an unknown name registers it too.
func (f *FakeSlack) AddChannel(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.channelIDLocked(strings.TrimPrefix(name, "#"))
}

// Started returns how many requests of method FakeSlack has received,
// including those it has not answered yet (a Delay in progress).
func (f *FakeSlack) Started(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started[method]
}

// Calls returns the recorded calls of method, oldest first; all calls when
// method is "".
func (f *FakeSlack) Calls(method string) []SlackCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []SlackCall
	for _, c := range f.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Messages returns the current state (after updates) of the parent messages
// in a channel, given by ID, in the order they were posted, each with its
// thread.
func (f *FakeSlack) Messages(channelID string) []SlackMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]SlackMessage, 0, len(f.parents[channelID]))
	for _, m := range f.parents[channelID] {
		c := *m
		c.Replies = append([]SlackMessage(nil), m.Replies...)
		out = append(out, c)
	}
	return out
}

// File returns the content uploaded for a file ID.
func (f *FakeSlack) File(id string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.files[id]
}

var slackChannelIDPattern = regexp.MustCompile(`^[CGD][A-Z0-9]{2,}$`)

func (f *FakeSlack) channelIDLocked(name string) string {
	if id, ok := f.names[name]; ok {
		return id
	}
	base := "C0" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return -1
	}, name)
	id := base
	for i := 2; f.ids[id]; i++ {
		id = base + strconv.Itoa(i)
	}
	f.names[name] = id
	f.ids[id] = true
	return id
}

// resolveLocked maps a channel argument to an ID. IDs must be known; names
// are created on first use. Like Slack, it fails for names when byID is set
// (chat.update and chat.getPermalink need the ID).
func (f *FakeSlack) resolveLocked(arg string, byID bool) (string, bool) {
	if slackChannelIDPattern.MatchString(arg) {
		return arg, f.ids[arg]
	}
	if byID || arg == "" {
		return arg, false
	}
	return f.channelIDLocked(strings.TrimPrefix(arg, "#")), true
}

func (f *FakeSlack) serveHTTP(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/")
	if strings.HasPrefix(r.URL.Path, slackUploadPathPrefix) {
		method = SlackUpload
	}

	f.mu.Lock()
	f.started[method]++
	var resp SlackResponse
	scripted := false
	if q := f.script[method]; len(q) > 0 {
		resp, f.script[method], scripted = q[0], q[1:], true
	}
	f.mu.Unlock()

	call := SlackCall{Method: method}
	if method == SlackUpload {
		call.FileIDs = []string{strings.TrimPrefix(r.URL.Path, slackUploadPathPrefix)}
	} else if err := f.parseForm(r, &call); err != nil {
		call.Status = http.StatusBadRequest
		f.record(call)
		http.Error(w, err.Error(), call.Status)
		return
	}

	// The body is read by now, so the request's context ends when the
	// client gives up.
	if resp.Delay > 0 {
		t := time.NewTimer(resp.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}

	switch {
	case scripted && resp.Status != 0 && resp.Status != http.StatusOK:
		call.Status = resp.Status
		f.record(call)
		if resp.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(resp.RetryAfter))
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(resp.Status)
		_, _ = fmt.Fprintf(w, "<html><body>%d %s</body></html>", resp.Status, http.StatusText(resp.Status))
		return
	case scripted && resp.Error != "":
		call.Status, call.Error = http.StatusOK, resp.Error
		f.record(call)
		writeSlackJSON(w, map[string]any{"ok": false, "error": resp.Error})
		return
	}

	if e := f.checkToken(r, method); e != "" {
		call.Status, call.Error = http.StatusOK, e
		f.record(call)
		writeSlackJSON(w, map[string]any{"ok": false, "error": e})
		return
	}

	var body map[string]any
	var e string
	switch method {
	case SlackPostMessage:
		body, e = f.postMessage(r, &call)
	case SlackUpdate:
		body, e = f.update(r, &call)
	case SlackGetPermalink:
		body, e = f.permalink(r, &call)
	case SlackGetUploadURL:
		body, e = f.getUploadURL(r)
	case SlackUpload:
		if ok := f.upload(r, &call); !ok {
			call.Status = http.StatusBadRequest
			f.record(call)
			http.Error(w, "bad upload", call.Status)
			return
		}
		call.Status = http.StatusOK
		f.record(call)
		_, _ = io.WriteString(w, "OK")
		return
	case SlackCompleteUpload:
		body, e = f.completeUpload(r, &call)
	case SlackHistory:
		body, e = f.history(r, &call)
	case SlackList:
		body, e = f.list(r)
	case SlackAuthTest:
		body = map[string]any{
			"url": "https://fake.slack.com/", "team": "Fake", "user": "responder",
			"team_id": "T0FAKE", "user_id": "U0RESPONDER", "bot_id": "B0RESPONDER",
		}
	default:
		e = "unknown_method"
	}
	call.Status, call.Error = http.StatusOK, e
	if scripted && resp.Lost {
		// The work is done; the answer never arrives.
		call.Status = 0
		f.record(call)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if scripted && resp.ErrorAfter != "" && e == "" {
		// The work is done; the answer says it failed.
		e, call.Error = resp.ErrorAfter, resp.ErrorAfter
	}
	f.record(call)
	if e != "" {
		writeSlackJSON(w, map[string]any{"ok": false, "error": e})
		return
	}
	body["ok"] = true
	writeSlackJSON(w, body)
}

func (f *FakeSlack) record(c SlackCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

// parseForm reads the request the way Slack does: form fields from a
// form-encoded body (chat.*, files.*, auth.test) or from the query string
// (slack-go sends chat.getPermalink as a GET).
func (f *FakeSlack) parseForm(r *http.Request, c *SlackCall) error {
	if r.Method == http.MethodPost {
		ct := r.Header.Get("Content-Type")
		if !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			return fmt.Errorf("unexpected content type %q", ct)
		}
	}
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("parse form: %w", err)
	}
	c.ChannelArg = r.Form.Get("channel")
	if c.ChannelArg == "" {
		c.ChannelArg = r.Form.Get("channel_id")
	}
	c.Channel = c.ChannelArg
	c.TS = r.Form.Get("ts")
	if c.TS == "" {
		c.TS = r.Form.Get("message_ts")
	}
	c.ThreadTS = r.Form.Get("thread_ts")
	c.Text = r.Form.Get("text")
	if c.Text == "" {
		c.Text = r.Form.Get("initial_comment")
	}
	c.BlocksJSON = r.Form.Get("blocks")
	return nil
}

// checkToken answers like Slack: not_authed without a token, invalid_auth
// with a wrong one. Form-encoded methods carry it in the token field; GET
// and the upload URL in an Authorization: Bearer header.
func (f *FakeSlack) checkToken(r *http.Request, method string) string {
	tok := ""
	if method != SlackUpload {
		tok = r.Form.Get("token")
	}
	if tok == "" {
		tok = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	switch tok {
	case "":
		return "not_authed"
	case f.token:
		return ""
	default:
		return "invalid_auth"
	}
}

func (f *FakeSlack) postMessage(r *http.Request, c *SlackCall) (map[string]any, string) {
	blocks, e := slackValidateBlocks(c.BlocksJSON)
	if e != "" {
		return nil, e
	}
	c.Blocks = blocks
	if c.Text == "" && len(blocks) == 0 {
		return nil, "no_text"
	}
	text := slackTruncate(c.Text, slackMaxMessageText)

	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.resolveLocked(c.ChannelArg, false)
	c.Channel = id
	if !ok {
		return nil, "channel_not_found"
	}
	var parent *SlackMessage
	if c.ThreadTS != "" {
		if parent = f.byTS[id+"/"+c.ThreadTS]; parent == nil {
			// Slack answers thread_not_found only for some cases; a reply
			// to an unknown ts is a usage error worth surfacing in tests.
			return nil, "thread_not_found"
		}
	}
	f.nextTS++
	// Like Slack's, a ts is the post's Unix time; the microseconds keep
	// them unique and increasing.
	f.lastSec = max(f.lastSec, time.Now().Unix())
	c.TS = fmt.Sprintf("%d.%06d", f.lastSec, f.nextTS%1000000)
	m := SlackMessage{Channel: id, TS: c.TS, ThreadTS: c.ThreadTS, Text: text, BlocksJSON: c.BlocksJSON, Blocks: blocks, Metadata: r.Form.Get("metadata")}
	if parent != nil {
		parent.Replies = append(parent.Replies, m)
	} else {
		f.parents[id] = append(f.parents[id], &m)
		f.byTS[id+"/"+c.TS] = &m
	}
	msg := map[string]any{"type": "message", "text": text, "ts": c.TS}
	if c.ThreadTS != "" {
		msg["thread_ts"] = c.ThreadTS
	}
	return map[string]any{"channel": id, "ts": c.TS, "message": msg}, ""
}

func (f *FakeSlack) update(r *http.Request, c *SlackCall) (map[string]any, string) {
	blocks, e := slackValidateBlocks(c.BlocksJSON)
	if e != "" {
		return nil, e
	}
	c.Blocks = blocks
	_, hasText := r.Form["text"]
	_, hasBlocks := r.Form["blocks"]
	if !hasText && !hasBlocks {
		return nil, "no_text"
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.resolveLocked(c.ChannelArg, true)
	if !ok {
		return nil, "channel_not_found"
	}
	m := f.byTS[id+"/"+c.TS]
	if m == nil {
		return nil, "message_not_found"
	}
	// Slack keeps the old blocks only when both text and blocks are omitted;
	// an update with text alone clears them.
	m.Text = slackTruncate(c.Text, slackMaxMessageText)
	m.BlocksJSON, m.Blocks = c.BlocksJSON, blocks
	m.Updates++
	return map[string]any{"channel": id, "ts": c.TS, "text": m.Text}, ""
}

func (f *FakeSlack) permalink(r *http.Request, c *SlackCall) (map[string]any, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.resolveLocked(c.ChannelArg, true)
	if !ok {
		return nil, "channel_not_found"
	}
	if f.byTS[id+"/"+c.TS] == nil {
		return nil, "message_not_found"
	}
	return map[string]any{
		"channel":   id,
		"permalink": "https://fake.slack.com/archives/" + id + "/p" + strings.ReplaceAll(c.TS, ".", ""),
	}, ""
}

// history answers conversations.history like Slack: the channel's
// top-level messages newest first, those with ts > oldest (or >= with
// inclusive), limit per page (default 100) with a next_cursor, and each
// message's metadata only when include_all_metadata is set. The channel
// must be an ID.
func (f *FakeSlack) history(r *http.Request, c *SlackCall) (map[string]any, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.resolveLocked(c.ChannelArg, true)
	if !ok || id != c.ChannelArg {
		return nil, "channel_not_found"
	}
	oldest, _ := strconv.ParseFloat(r.Form.Get("oldest"), 64)
	inclusive := r.Form.Get("inclusive") == "1" || r.Form.Get("inclusive") == "true"
	limit, err := strconv.Atoi(r.Form.Get("limit"))
	if err != nil || limit <= 0 {
		limit = 100
	}
	start, _ := strconv.Atoi(r.Form.Get("cursor"))
	meta := r.Form.Get("include_all_metadata") == "1" || r.Form.Get("include_all_metadata") == "true"
	var all []*SlackMessage
	for _, p := range slices.Backward(f.parents[id]) {
		ts, _ := strconv.ParseFloat(p.TS, 64)
		if p.TS == "" || ts < oldest || (ts == oldest && !inclusive) {
			continue
		}
		all = append(all, p)
	}
	if start > len(all) {
		start = len(all)
	}
	end := min(start+limit, len(all))
	msgs := make([]map[string]any, 0, end-start)
	for _, p := range all[start:end] {
		m := map[string]any{"type": "message", "ts": p.TS, "text": p.Text}
		if meta && p.Metadata != "" {
			var md any
			if json.Unmarshal([]byte(p.Metadata), &md) == nil {
				m["metadata"] = md
			}
		}
		msgs = append(msgs, m)
	}
	next := ""
	if end < len(all) {
		next = strconv.Itoa(end)
	}
	return map[string]any{"messages": msgs, "has_more": next != "", "response_metadata": map[string]any{"next_cursor": next}}, ""
}

// list answers conversations.list with every known channel, in pages of
// limit (default 100).
func (f *FakeSlack) list(r *http.Request) (map[string]any, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.names))
	for n := range f.names {
		names = append(names, n)
	}
	slices.Sort(names)
	limit, err := strconv.Atoi(r.Form.Get("limit"))
	if err != nil || limit <= 0 {
		limit = 100
	}
	start, _ := strconv.Atoi(r.Form.Get("cursor"))
	start = min(start, len(names))
	end := min(start+limit, len(names))
	chans := make([]map[string]any, 0, end-start)
	for _, n := range names[start:end] {
		chans = append(chans, map[string]any{"id": f.names[n], "name": n, "is_channel": true})
	}
	next := ""
	if end < len(names) {
		next = strconv.Itoa(end)
	}
	return map[string]any{"channels": chans, "response_metadata": map[string]any{"next_cursor": next}}, ""
}

func (f *FakeSlack) getUploadURL(r *http.Request) (map[string]any, string) {
	n, err := strconv.Atoi(r.Form.Get("length"))
	if r.Form.Get("filename") == "" || err != nil || n <= 0 {
		return nil, "invalid_arguments"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextFile++
	id := fmt.Sprintf("F%07d", f.nextFile)
	f.files[id] = nil
	return map[string]any{"upload_url": f.srv.URL + slackUploadPathPrefix + id, "file_id": id}, ""
}

func (f *FakeSlack) upload(r *http.Request, c *SlackCall) bool {
	file, _, err := r.FormFile("file")
	if err != nil {
		return false
	}
	defer func() { _ = file.Close() }()
	b, err := io.ReadAll(file)
	if err != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.files[c.FileIDs[0]]; !ok {
		return false
	}
	f.files[c.FileIDs[0]] = b
	return true
}

func (f *FakeSlack) completeUpload(r *http.Request, c *SlackCall) (map[string]any, string) {
	var files []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal([]byte(r.Form.Get("files")), &files); err != nil || len(files) == 0 {
		return nil, "invalid_arguments"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]map[string]any, 0, len(files))
	for _, fl := range files {
		if f.files[fl.ID] == nil {
			return nil, "file_not_found"
		}
		c.FileIDs = append(c.FileIDs, fl.ID)
		out = append(out, map[string]any{"id": fl.ID, "title": fl.Title})
	}
	if c.ChannelArg != "" {
		id, ok := f.resolveLocked(c.ChannelArg, true)
		if !ok {
			return nil, "channel_not_found"
		}
		c.Channel = id
		m := SlackMessage{Channel: id, ThreadTS: c.ThreadTS, Text: c.Text, FileIDs: c.FileIDs}
		if c.ThreadTS != "" {
			parent := f.byTS[id+"/"+c.ThreadTS]
			if parent == nil {
				return nil, "thread_not_found"
			}
			parent.Replies = append(parent.Replies, m)
		} else {
			f.parents[id] = append(f.parents[id], &m)
		}
	}
	return map[string]any{"files": out}, ""
}

// validateBlocks decodes a blocks field and checks the Block Kit limits a
// message surface has, answering as Slack does.
func slackValidateBlocks(s string) ([]goslack.Block, string) {
	if s == "" {
		return nil, ""
	}
	var raw []map[string]any
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, "invalid_blocks_format"
	}
	if len(raw) > slackMaxBlocks {
		return nil, "invalid_blocks"
	}
	ids := map[string]bool{}
	for _, b := range raw {
		if id, _ := b["block_id"].(string); id != "" {
			if ids[id] {
				return nil, "invalid_blocks"
			}
			ids[id] = true
		}
		if !slackValidBlock(b) {
			return nil, "invalid_blocks"
		}
	}
	var blocks goslack.Blocks
	if err := json.Unmarshal([]byte(s), &blocks); err != nil {
		return nil, "invalid_blocks_format"
	}
	return blocks.BlockSet, ""
}

func slackValidBlock(b map[string]any) bool {
	switch b["type"] {
	case "header":
		t, ok := b["text"].(map[string]any)
		return ok && t["type"] == "plain_text" && slackValidText(t, slackMaxHeaderText)
	case "section":
		t, hasText := b["text"].(map[string]any)
		fields, _ := b["fields"].([]any)
		if !hasText && len(fields) == 0 {
			return false
		}
		if hasText && !slackValidText(t, slackMaxSectionText) {
			return false
		}
		if len(fields) > slackMaxFields {
			return false
		}
		for _, fl := range fields {
			ft, ok := fl.(map[string]any)
			if !ok || !slackValidText(ft, slackMaxFieldText) {
				return false
			}
		}
		return true
	case "context":
		elems, _ := b["elements"].([]any)
		if len(elems) == 0 || len(elems) > slackMaxContextElems {
			return false
		}
		for _, e := range elems {
			et, ok := e.(map[string]any)
			if !ok {
				return false
			}
			if et["type"] == "image" {
				continue
			}
			if !slackValidText(et, slackMaxSectionText) {
				return false
			}
		}
		return true
	case "divider", "actions", "image", "rich_text":
		return true
	}
	return false
}

func slackValidText(t map[string]any, limit int) bool {
	if t["type"] != "plain_text" && t["type"] != "mrkdwn" {
		return false
	}
	s, _ := t["text"].(string)
	n := utf8.RuneCountInString(s)
	return n > 0 && n <= limit
}

func slackTruncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

func writeSlackJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}
