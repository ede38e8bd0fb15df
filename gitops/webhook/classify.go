// Package webhook is nestbot's GitHub webhook intake and the workers that
// run what it accepts.
//
// Intake (Handler) verifies X-Hub-Signature-256 over the raw body before it
// parses anything, decides whether nestbot handles the delivery (Classify),
// and answers 202 only once the delivery is durably stored as a job in a
// store.Queue. Workers (Pool) claim jobs, run them through a function the
// caller gives, and record each delivery as done only after it ran, so a
// deliberate redelivery of a failed one runs again while a duplicate of a
// done one does nothing. Server puts both behind one listener with
// /healthz, /readyz and /metrics.
//
//	srv, err := webhook.New(webhook.Config{
//		Secrets: secrets, Queue: db.Queue(), Workers: 4, Run: handlers.Run, Logger: slog.Default(),
//	})
//	if err != nil { ... }
//	err = srv.Run(ctx, listener) // until ctx ends, then a graceful shutdown
package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/ducksnest/nestbot/gitops/command"

	"github.com/ducksnest/nestbot/store"
)

// The events nestbot handles.
const (
	EventPullRequest  = "pull_request"
	EventIssueComment = "issue_comment"
	EventPush         = "push"
	EventPing         = "ping"
)

// planActions are the pull_request actions that call for a plan.
var planActions = map[string]bool{
	"opened":           true,
	"synchronize":      true,
	"reopened":         true,
	"ready_for_review": true,
}

// PayloadError says why a payload of an event nestbot handles cannot be
// used: it is not JSON, or lacks a field nestbot needs. Intake answers 400.
type PayloadError struct {
	Event string
	Err   error
}

func (e *PayloadError) Error() string {
	return fmt.Sprintf("webhook: %s payload: %v", e.Event, e.Err)
}

func (e *PayloadError) Unwrap() error { return e.Err }

// payload is the little of a delivery that intake and superseding read.
type payload struct {
	Action     string `json:"action"`
	Number     int    `json:"number"`
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	Repository *struct {
		FullName      string `json:"full_name"`
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
	PullRequest *struct {
		Head struct {
			SHA string `json:"sha"`
		} `json:"head"`
		Merged bool `json:"merged"`
	} `json:"pull_request"`
	Issue *struct {
		Number      int             `json:"number"`
		PullRequest json.RawMessage `json:"pull_request"`
	} `json:"issue"`
	Comment *struct {
		ID   int64  `json:"id"`
		Body string `json:"body"`
	} `json:"comment"`
}

// Classify decides what nestbot does with a delivery of event whose body is
// payload. handled is true for the deliveries that become jobs; key is then
// the job's Key, which serializes the jobs of one pull request
// ("owner/repo#12") or of one repository's default branch ("owner/repo").
//
// Handled:
//   - pull_request opened, synchronize, reopened, ready_for_review (plan);
//     closed, merged or not (the handler finishes the PR's comment and check,
//     and a close supersedes a plan still running for it);
//   - issue_comment created on a pull request whose first line is a /nest
//     command (see NestCommand);
//   - push to the repository's default branch (apply); a push that deletes
//     the branch, and pushes to other branches and tags, are not handled.
//
// Everything else, ping included (Handler answers ping itself), is not
// handled, and its payload is not parsed. A payload of a handled event that
// is not JSON or lacks what nestbot needs is a *PayloadError.
func Classify(event string, body []byte) (key string, handled bool, err error) {
	c, handled, err := classify(event, body)
	return c.key, handled, err
}

// classified is what intake takes from a handled delivery.
type classified struct {
	key string
	// once, when set, is the job's id instead of the delivery's: a
	// command runs once per comment, whatever delivery carries it (a
	// replayed delivery gets a new id; the comment keeps its own).
	once string
}

// CommentJobID is the job id of the command in comment id: one job per
// comment, so a replayed delivery of it is a duplicate.
func CommentJobID(id int64) string { return fmt.Sprintf("issue_comment-%d", id) }

func classify(event string, body []byte) (c classified, handled bool, err error) {
	switch event {
	case EventPullRequest, EventIssueComment, EventPush:
	default:
		return c, false, nil
	}
	p, err := parse(event, body)
	if err != nil {
		return c, false, err
	}
	bad := func(format string, args ...any) (classified, bool, error) {
		return c, false, &PayloadError{Event: event, Err: fmt.Errorf(format, args...)}
	}
	if p.Action == "" && event != EventPush {
		return bad("no action")
	}
	switch event {
	case EventPullRequest:
		if !planActions[p.Action] && p.Action != "closed" {
			return c, false, nil
		}
		switch {
		case p.Number <= 0:
			return bad("no pull request number")
		case p.PullRequest == nil || p.PullRequest.Head.SHA == "":
			return bad("no pull_request.head.sha")
		}
		return classified{key: fmt.Sprintf("%s#%d", p.Repository.FullName, p.Number)}, true, nil
	case EventIssueComment:
		if p.Action != "created" {
			return c, false, nil
		}
		switch {
		case p.Issue == nil || p.Issue.Number <= 0:
			return bad("no issue.number")
		case p.Comment == nil:
			return bad("no comment")
		}
		if !isPullRequest(p.Issue.PullRequest) {
			return c, false, nil
		}
		if _, ok := NestCommand(p.Comment.Body); !ok {
			return c, false, nil
		}
		if p.Comment.ID <= 0 {
			return bad("no comment.id")
		}
		return classified{key: fmt.Sprintf("%s#%d", p.Repository.FullName, p.Issue.Number), once: CommentJobID(p.Comment.ID)}, true, nil
	default: // push
		switch {
		case p.Ref == "":
			return bad("no ref")
		case p.Repository.DefaultBranch == "":
			return bad("no repository.default_branch")
		}
		if p.Deleted || p.Ref != "refs/heads/"+p.Repository.DefaultBranch {
			return c, false, nil
		}
		return classified{key: p.Repository.FullName}, true, nil
	}
}

// parse decodes the fields of p that every handled event has.
//
// It reads with encoding/json/v2's decoder as published outside the
// standard library (github.com/go-json-experiment/json), which validates
// the whole payload in one pass and skips what payload does not name
// without decoding it, where encoding/json validates in a pass of its own
// first. It reads exactly as encoding/json (and so go-github, which the
// handlers decode with) does, so intake and the handlers cannot read one
// payload two ways.
func parse(event string, body []byte) (payload, error) {
	var p payload
	if err := jsonv2.Unmarshal(body, &p, asEncodingJSON); err != nil {
		var syntax *jsontext.SyntacticError
		var typ *jsonv2.SemanticError
		switch {
		case errors.As(err, &syntax):
			return p, &PayloadError{Event: event, Err: fmt.Errorf("not JSON: %v at byte %d", syntax.Err, syntax.ByteOffset)}
		case errors.As(err, &typ) && typ.GoType != nil:
			return p, &PayloadError{Event: event, Err: fmt.Errorf("field %s is a JSON %s, want %s", strings.ReplaceAll(strings.TrimPrefix(string(typ.JSONPointer), "/"), "/", "."), jsonKind(typ.JSONKind), typ.GoType)}
		}
		return p, &PayloadError{Event: event, Err: err}
	}
	if p.Repository == nil || !strings.Contains(p.Repository.FullName, "/") {
		return p, &PayloadError{Event: event, Err: errors.New("no repository.full_name (owner/name)")}
	}
	return p, nil
}

// asEncodingJSON reads as encoding/json reads: names matched regardless of
// case (not of '_' and '-'), the last of a repeated name winning, bytes
// that are not UTF-8 read as U+FFFD. Its errors are not encoding/json's:
// to report a syntax error before a type error met earlier, as
// encoding/json does, the v1 options read the payload twice (half of
// Classify's time). What is refused is the same: anything either is.
var asEncodingJSON = jsonv2.JoinOptions(jsonv1.DefaultOptionsV1(), jsonv1.ReportErrorsWithLegacySemantics(false))

// jsonKind names a JSON kind as encoding/json's errors do.
func jsonKind(k jsontext.Kind) string {
	switch k {
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "bool"
	case '{':
		return "object"
	case '[':
		return "array"
	case 'n':
		return "null"
	}
	return "value"
}

// isPullRequest tells whether an issue's pull_request field says the issue
// is a pull request: present and not null.
func isPullRequest(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// NestCommand reads a comment body as a nestbot command (command.Fields):
// its first line, whose first word is exactly /nest; args are the words
// after it.
func NestCommand(body string) (args []string, ok bool) { return command.Fields(body) }

// SupersedesPlan is the default rule by which a newly accepted job cancels
// a running one of the same Key: a running plan — a pull_request opened,
// synchronize, reopened or ready_for_review, or an issue_comment "/nest" or
// "/nest plan" — is superseded by a pull_request synchronize with another
// head sha (a new push to the PR), or by a pull_request closed. Nothing else
// is: an apply is never cancelled this way.
func SupersedesPlan(newJob, running store.Job) bool {
	if newJob.Key != running.Key || newJob.ID == running.ID || newJob.Event != EventPullRequest {
		return false
	}
	n, err := parse(newJob.Event, newJob.Payload)
	if err != nil || n.PullRequest == nil {
		return false
	}
	r, err := parse(running.Event, running.Payload)
	if err != nil {
		return false
	}
	switch running.Event {
	case EventPullRequest:
		if !planActions[r.Action] || r.PullRequest == nil {
			return false
		}
	case EventIssueComment:
		if r.Comment == nil {
			return false
		}
		args, ok := NestCommand(r.Comment.Body)
		if !ok || (len(args) > 0 && args[0] != "plan") {
			return false
		}
	default:
		return false
	}
	switch n.Action {
	case "closed":
		return true
	case "synchronize":
		return r.PullRequest == nil || r.PullRequest.Head.SHA != n.PullRequest.Head.SHA
	}
	return false
}
