package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManPages: nestbot man DIR writes a page for nestbot and for each
// verb (the release ships them in its archives); the verb itself stays
// out of nestbot --help.
func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	if code, _, errOut := runCLI(t, nil, "man", dir); code != 0 {
		t.Fatalf("man: exit %d: %s", code, errOut)
	}
	for _, page := range []string{"nestbot.1", "nestbot-plan.1", "nestbot-certs-status.1", "nestbot-version.1"} {
		data, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("no %s: %v", page, err)
			continue
		}
		title := strings.ToUpper(strings.TrimSuffix(page, ".1"))
		if !strings.Contains(string(data), `.TH "`+title+`" "1"`) || !strings.Contains(string(data), ".SH SYNOPSIS") {
			t.Errorf("%s is not a man page titled %s:\n%.300s", page, title, data)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nestbot-man.1")); err == nil {
		t.Error("the hidden man verb got a page of its own")
	}
	_, help, _ := runCLI(t, nil, "--help")
	if strings.Contains(help, "\n  man ") {
		t.Errorf("nestbot --help lists man:\n%s", help)
	}
}
