package action

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/gitops/bot"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/store"
)

// TestActionLogsJSONLines: the Action's records are JSON lines, one
// record each, and those of a pull request's plan carry the workflow run,
// the event, the repository and the pull request as attributes; the token
// is in none. The plan fails early (its clone is refused), which is all
// it takes to see what the Action logs.
func TestActionLogsJSONLines(t *testing.T) {
	const token = "action-log-token-c4n4ry"
	dir := t.TempDir()
	event := filepath.Join(dir, "event.json")
	payload := `{"action":"opened","number":7,"pull_request":{"number":7,"head":{"sha":"` + strings.Repeat("a", 40) + `"}},
"repository":{"name":"infra","full_name":"ducksnest/infra","owner":{"login":"ducksnest"},"clone_url":"http://127.0.0.1:1/ducksnest/infra.git"}}`
	if err := os.WriteFile(event, []byte(payload), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": event, "GITHUB_REPOSITORY": "ducksnest/infra", "GITHUB_RUN_ID": "4242"}
	gh, err := nestgh.New(nestgh.Options{BaseURL: "http://127.0.0.1:1", Token: token, Login: "github-actions[bot]"})
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "nestbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var logged strings.Builder
	cfg := Config{Getenv: func(k string) string { return env[k] }, Out: &strings.Builder{},
		Bot: bot.Config{GitHub: gh, Locker: db.Locks(), WorkDir: filepath.Join(dir, "work"), Logger: slog.New(slog.NewJSONHandler(&logged, nil))}}
	if _, err := Run(t.Context(), cfg); err == nil {
		t.Fatal("the plan of a pull request whose clone is refused succeeded")
	}
	var planning map[string]any
	for i, line := range strings.Split(strings.TrimSpace(logged.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("line %d is not a JSON record: %q", i+1, line)
		}
		if strings.Contains(line, token) {
			t.Errorf("line %d holds the token: %q", i+1, line)
		}
		if rec["msg"] == "planning the pull request" {
			planning = rec
		}
	}
	for k, want := range map[string]any{"run": "4242", "event": "pull_request", "repository": "ducksnest/infra", "pr": 7.0} {
		if planning[k] != want {
			t.Errorf("the planning record's %s is %v, want %v; the log:\n%s", k, planning[k], want, logged.String())
		}
	}
}
