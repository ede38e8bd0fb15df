package github

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Event is a webhook event ready to deliver: its name (the X-GitHub-Event
// header, such as "pull_request") and its JSON payload.
type Event struct {
	Name    string
	Payload []byte
	// DeliveryID, if set, is sent as X-GitHub-Delivery instead of a new
	// UUID: a redelivery keeps the ID of the delivery it repeats.
	DeliveryID string
}

// Example is one of GitHub's webhook payload examples.
type Example struct {
	Event   string
	Action  string // "" for events without one (push, ping)
	Payload []byte // as published
}

// Examples are GitHub's webhook payload examples, from the npm package
// @octokit/webhooks-examples (api.github.com/index.json), by event.
type Examples struct {
	byEvent map[string][]Example
}

// LoadExamples reads the examples from dir, the package's directory (or
// its api.github.com directory, or that index.json itself).
func LoadExamples(dir string) (*Examples, error) {
	path := dir
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		path = filepath.Join(dir, "api.github.com", "index.json")
		if _, err := os.Stat(path); err != nil {
			path = filepath.Join(dir, "index.json")
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("labgithub: load webhook examples: %w; point at the directory of npm @octokit/webhooks-examples (bash .ci/fixtures installs it)", err)
	}
	var index []struct {
		Name     string            `json:"name"`
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, fmt.Errorf("labgithub: load webhook examples from %s: %w", path, err)
	}
	e := &Examples{byEvent: map[string][]Example{}}
	for _, ev := range index {
		for _, raw := range ev.Examples {
			var a struct {
				Action string `json:"action"`
			}
			json.Unmarshal(raw, &a)
			e.byEvent[ev.Name] = append(e.byEvent[ev.Name], Example{Event: ev.Name, Action: a.Action, Payload: raw})
		}
	}
	if len(e.byEvent) == 0 {
		return nil, fmt.Errorf("labgithub: load webhook examples from %s: no events in it", path)
	}
	return e, nil
}

// Event lists every example of event, in the package's order.
func (e *Examples) Event(name string) []Example {
	return append([]Example(nil), e.byEvent[name]...)
}

// Events lists the events that have examples, sorted.
func (e *Examples) Events() []string {
	var names []string
	for n := range e.byEvent {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Sign is the X-Hub-Signature-256 of body: "sha256=" and the hex HMAC-SHA256
// of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// signSHA1 is the legacy X-Hub-Signature GitHub still sends.
func signSHA1(secret, body []byte) string {
	m := hmac.New(sha1.New, secret)
	m.Write(body)
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}

// Sender delivers webhook events as GitHub does: a signed POST.
type Sender struct {
	// URL receives the deliveries.
	URL string
	// Secret is the webhook secret; it signs every delivery and is never
	// logged.
	Secret []byte
	// HookID and InstallationTargetID fill GitHub's X-GitHub-Hook-* headers;
	// zero means 1 and 0.
	HookID               int64
	InstallationTargetID int64
	// Client sends; nil means one with GitHub's 10-second delivery timeout.
	Client *http.Client
}

// Delivery is what the receiver answered.
type Delivery struct {
	ID     string // X-GitHub-Delivery
	Status int
	Body   []byte // at most 64 KiB of it
}

// Send posts ev to the Sender's URL with GitHub's headers: X-GitHub-Event,
// X-GitHub-Delivery (a new UUID unless ev has one), X-Hub-Signature-256,
// X-Hub-Signature, Content-Type application/json and a
// GitHub-Hookshot User-Agent.
func (s *Sender) Send(ctx context.Context, ev Event) (Delivery, error) {
	id := ev.DeliveryID
	if id == "" {
		id = NewDeliveryID()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(ev.Payload))
	if err != nil {
		return Delivery{}, fmt.Errorf("labgithub: deliver %s: %w", ev.Name, err)
	}
	hookID := s.HookID
	if hookID == 0 {
		hookID = 1
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/lab")
	req.Header.Set("X-GitHub-Event", ev.Name)
	req.Header.Set("X-GitHub-Delivery", id)
	req.Header.Set("X-GitHub-Hook-ID", strconv.FormatInt(hookID, 10))
	req.Header.Set("X-GitHub-Hook-Installation-Target-ID", strconv.FormatInt(s.InstallationTargetID, 10))
	req.Header.Set("X-GitHub-Hook-Installation-Target-Type", "integration")
	req.Header.Set("X-Hub-Signature-256", Sign(s.Secret, ev.Payload))
	req.Header.Set("X-Hub-Signature", signSHA1(s.Secret, ev.Payload))
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Delivery{ID: id}, fmt.Errorf("labgithub: deliver %s %s: %w", ev.Name, id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return Delivery{ID: id, Status: resp.StatusCode, Body: body}, nil
}

// NewDeliveryID is a random (version 4) UUID, as GitHub's delivery IDs are.
func NewDeliveryID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Examples are the webhook examples Config.WebhookExamples names, loaded
// once.
func (s *Server) Examples() (*Examples, error) {
	s.examplesOnce.Do(func() {
		if s.cfg.WebhookExamples == "" {
			s.examplesErr = fmt.Errorf("labgithub: no webhook examples: set Config.WebhookExamples to the directory of npm @octokit/webhooks-examples")
			return
		}
		s.examples, s.examplesErr = LoadExamples(s.cfg.WebhookExamples)
	})
	return s.examples, s.examplesErr
}

// pickExample decodes the first example of event for which want says yes
// (or, failing that, the first example).
func (s *Server) pickExample(event string, want func(map[string]any) bool) (map[string]any, error) {
	ex, err := s.Examples()
	if err != nil {
		return nil, err
	}
	list := ex.Event(event)
	if len(list) == 0 {
		return nil, fmt.Errorf("labgithub: no %s example in the webhook examples", event)
	}
	var first map[string]any
	for _, e := range list {
		m, err := decodeExample(e.Payload)
		if err != nil {
			return nil, fmt.Errorf("labgithub: %s example: %w", event, err)
		}
		if first == nil {
			first = m
		}
		if want(m) {
			return m, nil
		}
	}
	return first, nil
}

func decodeExample(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	err := d.Decode(&m)
	return m, err
}

// rehost points an example's github.com URLs, and its repository's name,
// at the lab's.
func (s *Server) rehost(m map[string]any, exampleFull, full string) {
	host := strings.TrimPrefix(s.web, "http://")
	rep := strings.NewReplacer(
		"https://api.github.com", s.APIURL(),
		"https://uploads.github.com", s.web,
		"https://github.com", s.web,
		"git://github.com/", "git://"+host+"/",
		"git@github.com:", "git@"+host+":",
	)
	var walk func(v any) any
	walk = func(v any) any {
		switch t := v.(type) {
		case map[string]any:
			for k, x := range t {
				t[k] = walk(x)
			}
		case []any:
			for i, x := range t {
				t[i] = walk(x)
			}
		case string:
			if strings.Contains(t, "github.com") {
				if exampleFull != "" {
					t = strings.ReplaceAll(t, "/"+exampleFull, "/"+full)
					t = strings.ReplaceAll(t, ":"+exampleFull, ":"+full)
				}
				return rep.Replace(t)
			}
		}
		return v
	}
	walk(m)
}

// overlay writes ours over an example's object: our value wins, objects
// merge, keys only the example has stay. Where the example holds a number
// and ours is a timestamp (push events' repository dates), the number
// becomes our time in Unix seconds.
func overlay(dst, ours map[string]any) {
	for k, v := range ours {
		d, ok := dst[k]
		if !ok || d == nil || v == nil {
			dst[k] = v
			continue
		}
		dm, dok := d.(map[string]any)
		om, ook := v.(map[string]any)
		switch {
		case dok && ook:
			overlay(dm, om)
		case isNumber(d):
			if str, ok := v.(string); ok {
				if t, err := time.Parse(time.RFC3339, str); err == nil {
					dst[k] = t.Unix()
				}
				continue
			}
			dst[k] = v
		default:
			dst[k] = v
		}
	}
}

func isNumber(v any) bool {
	_, ok := v.(json.Number)
	return ok
}

// object is the object at m[key], an empty one put there first when the
// example has none.
func object(m map[string]any, key string) map[string]any {
	o, ok := m[key].(map[string]any)
	if !ok {
		o = map[string]any{}
		m[key] = o
	}
	return o
}

// roundTrip turns our typed maps into the generic shape overlay merges.
func roundTrip(v any) map[string]any {
	b, _ := json.Marshal(v)
	m, _ := decodeExample(b)
	return m
}

// frame fills what every event carries: repository, sender, installation.
func (s *Server) frame(m map[string]any, r *repo, sender *user) {
	exampleFull := ""
	if rep, ok := m["repository"].(map[string]any); ok {
		exampleFull, _ = rep["full_name"].(string)
	}
	s.rehost(m, exampleFull, r.fullName())
	delete(m, "organization")
	overlay(object(m, "repository"), roundTrip(s.repoJSON(r)))
	if owner, ok := m["repository"].(map[string]any)["owner"].(map[string]any); ok {
		if _, has := owner["name"]; has {
			owner["name"] = r.owner.login
		}
		if _, has := owner["email"]; has {
			owner["email"] = nil
		}
	}
	overlay(object(m, "sender"), roundTrip(s.userJSON(sender)))
	m["installation"] = map[string]any{"id": s.app.installationID, "node_id": nodeID("Installation", s.app.installationID)}
}

// event is the event name of repository owner/repoName: an example of it
// that pick accepts, completed by fill (called with s.mu held).
func (s *Server) event(name, owner, repoName string, pick func(map[string]any) bool, fill func(m map[string]any, r *repo) error) (Event, error) {
	m, err := s.pickExample(name, pick)
	if err != nil {
		return Event{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return Event{}, err
	}
	if err := fill(m, r); err != nil {
		return Event{}, err
	}
	return encodeEvent(name, m)
}

// withAction picks an example whose action is action.
func withAction(action string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["action"] == action }
}

func encodeEvent(name string, m map[string]any) (Event, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return Event{}, fmt.Errorf("labgithub: encode the %s event: %w", name, err)
	}
	return Event{Name: name, Payload: b}, nil
}

// PingEvent is the ping GitHub sends when a webhook is set up.
func (s *Server) PingEvent(owner, repoName string) (Event, error) {
	hasRepo := func(m map[string]any) bool { _, ok := m["repository"]; return ok }
	return s.event("ping", owner, repoName, hasRepo, func(m map[string]any, r *repo) error {
		s.frame(m, r, r.owner)
		if hook, ok := m["hook"].(map[string]any); ok {
			hook["app_id"] = s.app.id
		}
		return nil
	})
}

// PushEvent is the push event of p (from Commit or Merge).
func (s *Server) PushEvent(p Pushed) (Event, error) {
	hasCommits := func(m map[string]any) bool {
		cs, _ := m["commits"].([]any)
		return len(cs) > 0
	}
	return s.event("push", p.Owner, p.Repo, hasCommits, func(m map[string]any, r *repo) error {
		pusher := s.userLocked(p.Pusher)
		s.frame(m, r, pusher)
		commits := []any{}
		var head any
		var between []commitInfo
		if p.After != zeroSHA {
			between = s.commitsBetween(r.dir, p.Before, p.After)
		}
		for _, c := range between {
			person := map[string]any{"name": c.authorName, "email": c.authorEmail, "username": c.authorName}
			commit := map[string]any{
				"id": c.sha, "tree_id": c.tree, "distinct": true, "message": c.message,
				"timestamp": c.date.Format(time.RFC3339), "url": s.web + "/" + r.fullName() + "/commit/" + c.sha,
				"author": person, "committer": person,
				"added": nonNil(c.added), "removed": nonNil(c.removed), "modified": nonNil(c.modified),
			}
			commits = append(commits, commit)
			head = commit
		}
		m["ref"], m["before"], m["after"] = p.Ref, p.Before, p.After
		m["created"], m["deleted"], m["forced"], m["base_ref"] = p.Before == zeroSHA, p.After == zeroSHA, false, nil
		m["compare"] = s.web + "/" + r.fullName() + "/compare/" + short(p.Before) + "..." + short(p.After)
		m["commits"], m["head_commit"] = commits, head
		m["pusher"] = map[string]any{"name": pusher.login, "email": pusher.login + "@users.noreply.lab"}
		return nil
	})
}

func short(sha string) string { return sha[:min(12, len(sha))] }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// PullRequestEvent is the pull_request event for action ("opened",
// "synchronize", "closed", "reopened", ...) on pull request number as it
// stands. A synchronize event carries the head before the last push.
func (s *Server) PullRequestEvent(owner, repoName string, number int, action string) (Event, error) {
	return s.event("pull_request", owner, repoName, withAction(action), func(m map[string]any, r *repo) error {
		is, ok := r.issues[number]
		if !ok || is.pr == nil {
			return fmt.Errorf("labgithub: pull_request event: %s has no pull request #%d", r.fullName(), number)
		}
		sender := is.user
		if is.pr.merged && is.pr.mergedBy != nil {
			sender = is.pr.mergedBy
		}
		s.frame(m, r, sender)
		m["action"], m["number"] = action, number
		overlay(object(m, "pull_request"), roundTrip(s.pullJSON(r, is, true)))
		if action == "synchronize" {
			m["before"], m["after"] = nonEmptyOr(is.pr.prevHeadSHA, zeroSHA), is.pr.headSHA
		}
		return nil
	})
}

// IssueCommentEvent is the issue_comment event for action ("created",
// "edited", "deleted") on comment id, as it stands (a deleted comment as it
// was).
func (s *Server) IssueCommentEvent(owner, repoName string, commentID int64, action string) (Event, error) {
	return s.event("issue_comment", owner, repoName, withAction(action), func(m map[string]any, r *repo) error {
		cm, ok := r.comments[commentID]
		if !ok && action == "deleted" {
			cm, ok = r.deleted[commentID]
		}
		if !ok {
			return fmt.Errorf("labgithub: issue_comment event: %s has no comment %d", r.fullName(), commentID)
		}
		is := r.issues[cm.number]
		s.frame(m, r, cm.user)
		m["action"] = action
		issueObj := object(m, "issue")
		if is.pr == nil {
			delete(issueObj, "pull_request")
		}
		overlay(issueObj, roundTrip(s.issueJSON(r, is)))
		overlay(object(m, "comment"), roundTrip(s.commentJSON(r, cm)))
		return nil
	})
}
