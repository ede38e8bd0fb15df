package logs_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/internal/logs"
)

// TestNewPicksTheFormat: auto is JSON unless the writer is a terminal;
// text and json are what they say whatever the writer; anything else is
// refused, naming the flag and the values it takes.
func TestNewPicksTheFormat(t *testing.T) {
	for _, tc := range []struct {
		format   string
		terminal bool
		json     bool
	}{
		{"auto", false, true},
		{"auto", true, false},
		{"text", false, false},
		{"text", true, false},
		{"json", false, true},
		{"json", true, true},
	} {
		var out strings.Builder
		l, err := logs.New(&out, tc.format, slog.LevelInfo, tc.terminal)
		if err != nil {
			t.Fatalf("%s (terminal %v): %v", tc.format, tc.terminal, err)
		}
		l.Info("planned", "repository", "ducksnest/infra", "pr", 7)
		var rec map[string]any
		isJSON := json.Unmarshal([]byte(out.String()), &rec) == nil
		if isJSON != tc.json {
			t.Errorf("%s (terminal %v) wrote %q, want JSON %v", tc.format, tc.terminal, out.String(), tc.json)
		}
		if !isJSON && !strings.Contains(out.String(), "msg=planned repository=ducksnest/infra pr=7") {
			t.Errorf("%s (terminal %v) wrote %q, want slog's text", tc.format, tc.terminal, out.String())
		}
	}
	for _, bad := range []string{"yaml", "JSON", ""} {
		_, err := logs.New(&strings.Builder{}, bad, slog.LevelInfo, false)
		if err == nil || !strings.Contains(err.Error(), "--log-format") || !strings.Contains(err.Error(), "auto") {
			t.Errorf("format %q: error %v, want one naming --log-format and its values", bad, err)
		}
	}
}

// TestLevelFilters: --log-level's values, any case, pass on their level
// and above; the empty one is info; anything else is refused, naming the
// flag and its values.
func TestLevelFilters(t *testing.T) {
	for _, tc := range []struct {
		level string
		want  string // which of debug, info, warn, error got through
	}{
		{"debug", "debug info warn error"},
		{"", "info warn error"},
		{"INFO", "info warn error"},
		{"warn", "warn error"},
		{"error", "error"},
	} {
		level, err := logs.ParseLevel(tc.level)
		if err != nil {
			t.Fatalf("ParseLevel(%q): %v", tc.level, err)
		}
		var out strings.Builder
		l, _ := logs.New(&out, logs.FormatText, level, false)
		l.Debug("debug")
		l.Info("info")
		l.Warn("warn")
		l.Error("error")
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			_, msg, _ := strings.Cut(line, "msg=")
			got = append(got, msg)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("--log-level %q logged %q, want %q", tc.level, got, tc.want)
		}
	}
	for _, bad := range []string{"verbose", "info+2", "-4", "warning"} {
		if _, err := logs.ParseLevel(bad); err == nil || !strings.Contains(err.Error(), "--log-level") || !strings.Contains(err.Error(), "debug, info, warn, error") {
			t.Errorf("level %q: error %v, want one naming --log-level and its values", bad, err)
		}
	}
}

// TestOrDiscards: a nil logger is one that discards, and a logger is kept.
func TestOrDiscards(t *testing.T) {
	if logs.Or(nil).Enabled(t.Context(), slog.LevelError) {
		t.Error("Or(nil) logs")
	}
	l := slog.New(slog.NewTextHandler(&strings.Builder{}, nil))
	if logs.Or(l) != l {
		t.Error("Or(l) is not l")
	}
}

// TestMapStringsReachesEveryString: the message, string values, errors,
// Stringers, groups and the attributes of With all pass through the
// function; so a canary given to any of them is not written.
func TestMapStringsReachesEveryString(t *testing.T) {
	const canary = "CANARY-7f3a"
	var out strings.Builder
	l := slog.New(logs.MapStrings(slog.NewJSONHandler(&out, nil), func(s string) string {
		return strings.ReplaceAll(s, canary, "[redacted]")
	}))
	l = l.With("token", canary).WithGroup("job")
	l.Info("sent "+canary, "err", errors.New("401 for "+canary), "addr", stringer(canary),
		"bytes", []byte(canary), "g", slog.GroupValue(slog.String("inner", canary)), "n", 3)
	if strings.Contains(out.String(), canary) {
		t.Errorf("the canary was written: %s", out.String())
	}
	if n := strings.Count(out.String(), "[redacted]"); n != 6 {
		t.Errorf("%d values redacted, want 6: %s", n, out.String())
	}
	if !strings.Contains(out.String(), `"n":3`) {
		t.Errorf("a number was changed: %s", out.String())
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// TestAtLeastDropsLowerLevels: below the level nothing is written, at it
// and above the record is, with the attributes of With.
func TestAtLeastDropsLowerLevels(t *testing.T) {
	var out strings.Builder
	l := logs.AtLeast(slog.New(slog.NewTextHandler(&out, nil)), slog.LevelWarn).With("host", "laptop-ultra")
	l.Info("repeats the report")
	l.Warn("worth saying")
	if strings.Contains(out.String(), "repeats") || !strings.Contains(out.String(), "level=WARN msg=\"worth saying\" host=laptop-ultra") {
		t.Errorf("wrote %q", out.String())
	}
	logs.AtLeast(nil, slog.LevelWarn).Error("to nowhere") // discards, does not panic
}

// TestPrintfIsOneRecord: the adapter for APIs that take a Logf writes one
// record a call, without the trailing newline.
func TestPrintfIsOneRecord(t *testing.T) {
	var out strings.Builder
	logs.Printf(slog.New(slog.NewJSONHandler(&out, nil)))("rollout: %s: %v\n", "laptop-ultra", errors.New("lost"))
	var rec map[string]any
	if err := json.Unmarshal([]byte(out.String()), &rec); err != nil || rec["msg"] != "rollout: laptop-ultra: lost" {
		t.Errorf("wrote %q (%v)", out.String(), err)
	}
	logs.Printf(nil)("to nowhere") // discards, does not panic
}
