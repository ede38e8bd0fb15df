package webhook_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/ducksnest/nestbot/gitops/webhook"
)

// TestGitHubExamplesGetTheRightStatusAndAJobOnlyWhenHandled posts every
// example payload of pull_request, issue_comment, push and ping that GitHub
// publishes (@octokit/webhooks-examples), signed, and checks the status of
// each and the jobs the queue holds afterwards.
func TestGitHubExamplesGetTheRightStatusAndAJobOnlyWhenHandled(t *testing.T) {
	db := openDB(t)
	h := &webhook.Handler{Secrets: [][]byte{[]byte(secret)}, Queue: db.Queue(), Logger: logger(t)}
	ts := httptest.NewServer(h)
	defer ts.Close()

	type want struct {
		status int
		key    string // of the job, when one is stored
	}
	const pr, repo = "Codertocat/Hello-World#2", "Codertocat/Hello-World"
	expect := func(e example) want {
		var p struct {
			Ref     string `json:"ref"`
			Deleted bool   `json:"deleted"`
			Issue   struct {
				PullRequest json.RawMessage `json:"pull_request"`
			} `json:"issue"`
			Comment struct {
				Body string `json:"body"`
			} `json:"comment"`
		}
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatal(err)
		}
		switch e.Event {
		case "ping":
			return want{status: http.StatusOK}
		case "pull_request":
			if slices.Contains([]string{"opened", "synchronize", "reopened", "ready_for_review", "closed"}, e.Action) {
				return want{http.StatusAccepted, pr}
			}
		case "issue_comment":
			if e.Action == "created" && p.Issue.PullRequest != nil && string(p.Issue.PullRequest) != "null" && p.Comment.Body == "/nest plan" {
				return want{http.StatusAccepted, pr}
			}
		case "push":
			if p.Ref == "refs/heads/master" && !p.Deleted {
				return want{http.StatusAccepted, repo}
			}
		}
		return want{status: http.StatusNoContent}
	}

	all := examples(t, "pull_request", "issue_comment", "push", "ping")
	// GitHub's issue_comment examples are all on issues; the same payloads
	// as /nest plan comments on a pull request are handled when created.
	// Each is a comment of its own: a command runs once per comment.
	for i, e := range examples(t, "issue_comment") {
		e.Payload = edit(t, e.Payload, map[string]any{
			"issue.pull_request": map[string]any{"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/2"},
			"issue.number":       2,
			"comment.body":       "/nest plan",
			"comment.id":         1000 + i,
		})
		all = append(all, e)
	}

	stored := map[string]string{} // delivery -> key
	accepted := map[string]int{}
	for i, e := range all {
		id := newDelivery()
		w := expect(e)
		status, body := send(t, ts.URL, e.Event, id, e.Payload)
		if status != w.status {
			t.Errorf("example %d (%s %s): status %d %q, want %d", i, e.Event, e.Action, status, body, w.status)
		}
		if e.Event == "ping" && body != "{\"msg\":\"pong\"}\n" {
			t.Errorf("ping answered %q, want {\"msg\":\"pong\"}", body)
		}
		if w.status == http.StatusAccepted {
			if e.Event == "issue_comment" {
				var c struct {
					Comment struct {
						ID int64 `json:"id"`
					} `json:"comment"`
				}
				json.Unmarshal(e.Payload, &c)
				id = webhook.CommentJobID(c.Comment.ID) // the job of a command is its comment's
			}
			stored[id] = w.key
			accepted[e.Event]++
		}
	}
	// Pinned by the fixture's version (7.6.1): 12 of the 29 pull_request
	// examples, 2 of the 7 pushes, none of the issue comments on issues and
	// 5 of the 9 as /nest plan comments on a pull request.
	if accepted["pull_request"] != 12 || accepted["push"] != 2 || accepted["issue_comment"] != 5 {
		t.Errorf("accepted %v, want pull_request 12, push 2, issue_comment 5", accepted)
	}

	jobs := drain(t, db.Queue())
	got := map[string]string{}
	for _, j := range jobs {
		got[j.ID] = j.Key
	}
	if len(jobs) != len(stored) {
		t.Errorf("the queue held %d jobs, want %d (one per 202)", len(jobs), len(stored))
	}
	for id, key := range stored {
		if got[id] != key {
			t.Errorf("delivery %s: job key %q, want %q", id, got[id], key)
		}
	}
	for id := range got {
		if _, ok := stored[id]; !ok {
			t.Errorf("delivery %s is a job but was not answered 202", id)
		}
	}
}
