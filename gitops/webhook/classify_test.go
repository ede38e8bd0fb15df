package webhook_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/store"
)

func comment(action, body string, onPR bool) []byte {
	pr := "null"
	if onPR {
		pr = `{"url":"https://api.github.com/repos/o/r/pulls/4"}`
	}
	return fmt.Appendf(nil, `{"action":%q,"issue":{"number":4,"pull_request":%s},"comment":{"id":9,"body":%q},"repository":{"full_name":"o/r"}}`, action, pr, body)
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name    string
		event   string
		payload string
		key     string // "" when not handled
		bad     bool
	}{
		{"pull request opened", "pull_request", string(prPayload("opened", 4, "a")), "o/r#4", false},
		{"pull request closed unmerged", "pull_request", string(prPayload("closed", 4, "a")), "o/r#4", false},
		{"pull request merged", "pull_request",
			`{"action":"closed","number":4,"repository":{"full_name":"o/r"},"pull_request":{"head":{"sha":"a"},"merged":true}}`, "o/r#4", false},
		{"pull request labeled", "pull_request", string(prPayload("labeled", 4, "a")), "", false},
		{"pull request without a number", "pull_request", string(prPayload("opened", 0, "a")), "", true},
		{"pull request labeled without a head", "pull_request", `{"action":"labeled","repository":{"full_name":"o/r"}}`, "", false},
		{"pull request without an action", "pull_request", `{"number":4,"repository":{"full_name":"o/r"}}`, "", true},
		{"repository without an owner", "pull_request", `{"action":"opened","number":4,"repository":{"full_name":"r"}}`, "", true},
		{"comment /nest plan on a pull request", "issue_comment", string(comment("created", "/nest plan\nthanks", true)), "o/r#4", false},
		{"bare /nest", "issue_comment", string(comment("created", "  /nest", true)), "o/r#4", false},
		{"comment /nest on an issue", "issue_comment", string(comment("created", "/nest plan", false)), "", false},
		{"comment edited to /nest", "issue_comment", string(comment("edited", "/nest plan", true)), "", false},
		{"comment /nestle", "issue_comment", string(comment("created", "/nestle", true)), "", false},
		{"comment with /nest later", "issue_comment", string(comment("created", "please\n/nest plan", true)), "", false},
		{"comment without an issue", "issue_comment", `{"action":"created","comment":{"body":"/nest"},"repository":{"full_name":"o/r"}}`, "", true},
		{"push to the default branch", "push", string(pushTo("o/r", "a")), "o/r", false},
		{"push to another branch", "push",
			`{"ref":"refs/heads/feature","repository":{"full_name":"o/r","default_branch":"main"}}`, "", false},
		{"push of a tag", "push", `{"ref":"refs/tags/main","repository":{"full_name":"o/r","default_branch":"main"}}`, "", false},
		{"default branch deleted", "push",
			`{"ref":"refs/heads/main","deleted":true,"repository":{"full_name":"o/r","default_branch":"main"}}`, "", false},
		{"push without a default branch", "push", `{"ref":"refs/heads/main","repository":{"full_name":"o/r"}}`, "", true},
		{"push that is not JSON", "push", `refs/heads/main`, "", true},
		// Names as encoding/json (and go-github) match them: in any case,
		// but with their underscores.
		{"names in other case", "push", `{"Ref":"refs/heads/main","Repository":{"Full_Name":"o/r","DEFAULT_BRANCH":"main"}}`, "o/r", false},
		{"a name without its underscore", "push", `{"ref":"refs/heads/main","repository":{"fullname":"o/r","default_branch":"main"}}`, "", true},
		{"trailing data", "push", string(pushTo("o/r", "a")) + `{}`, "", true},
		{"ping", "ping", `{"zen":"Practicality beats purity."}`, "", false},
		{"unknown event, not JSON", "deployment_status", `{{{`, "", false},
	} {
		key, handled, err := webhook.Classify(c.event, []byte(c.payload))
		var pe *webhook.PayloadError
		switch {
		case c.bad && !errors.As(err, &pe):
			t.Errorf("%s: err %v, want a *PayloadError", c.name, err)
		case !c.bad && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case key != c.key || handled != (c.key != ""):
			t.Errorf("%s: (%q, %v), want (%q, %v)", c.name, key, handled, c.key, c.key != "")
		}
	}
}

func TestNestCommand(t *testing.T) {
	for body, want := range map[string][]string{
		"/nest plan":          {"plan"},
		"/nest apply now\nok": {"apply", "now"},
		"\t/nest":             {},
		"/nest  unlock ":      {"unlock"},
	} {
		got, ok := webhook.NestCommand(body)
		if !ok || !slices.Equal(got, want) {
			t.Errorf("NestCommand(%q) = %q, %v; want %q", body, got, ok, want)
		}
	}
	for _, body := range []string{"", "/nestle", "nest plan", "lgtm\n/nest plan", "/NEST plan"} {
		if got, ok := webhook.NestCommand(body); ok {
			t.Errorf("NestCommand(%q) = %q, true; want not a command", body, got)
		}
	}
}

func TestSupersedesPlan(t *testing.T) {
	job := func(id, event string, payload []byte) store.Job {
		return store.Job{ID: id, Event: event, Key: "o/r#4", Payload: payload}
	}
	plan := job("d1", "pull_request", prPayload("synchronize", 4, "old"))
	for _, c := range []struct {
		name         string
		newJob, runs store.Job
		want         bool
	}{
		{"a push with a new head", job("d2", "pull_request", prPayload("synchronize", 4, "new")), plan, true},
		{"a push with the same head", job("d2", "pull_request", prPayload("synchronize", 4, "old")), plan, false},
		{"the PR closed", job("d2", "pull_request", prPayload("closed", 4, "old")), plan, true},
		{"the PR reopened", job("d2", "pull_request", prPayload("reopened", 4, "new")), plan, false},
		{"the same delivery", job("d1", "pull_request", prPayload("synchronize", 4, "new")), plan, false},
		{"another PR", store.Job{ID: "d2", Event: "pull_request", Key: "o/r#5", Payload: prPayload("synchronize", 5, "new")}, plan, false},
		{"a /nest plan comment running", job("d2", "pull_request", prPayload("synchronize", 4, "new")),
			job("d1", "issue_comment", comment("created", "/nest plan", true)), true},
		{"a /nest apply comment running", job("d2", "pull_request", prPayload("synchronize", 4, "new")),
			job("d1", "issue_comment", comment("created", "/nest apply", true)), false},
		{"the PR closed while it applies", job("d2", "pull_request", prPayload("closed", 4, "new")),
			job("d1", "issue_comment", comment("created", "/nest apply", true)), false},
		{"a comment does not supersede", job("d2", "issue_comment", comment("created", "/nest plan", true)), plan, false},
		{"a closing job is not a plan", job("d2", "pull_request", prPayload("synchronize", 4, "new")),
			job("d1", "pull_request", prPayload("closed", 4, "old")), false},
		{"an apply of the default branch", store.Job{ID: "d2", Event: "push", Key: "o/r", Payload: pushTo("o/r", "b")},
			store.Job{ID: "d1", Event: "push", Key: "o/r", Payload: pushTo("o/r", "a")}, false},
	} {
		if got := webhook.SupersedesPlan(c.newJob, c.runs); got != c.want {
			t.Errorf("%s: SupersedesPlan = %v, want %v", c.name, got, c.want)
		}
	}
}
