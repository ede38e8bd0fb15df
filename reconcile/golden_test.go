package reconcile

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite the golden files under testdata/")

// checkGolden compares got with the golden file testdata/<name> (name may
// hold slashes), or rewrites the file when the test runs with -update-golden.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", filepath.FromSlash(name))
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("golden: %v", err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("golden: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("golden file %s does not exist: run go test -run '^%s$' -update-golden, then review it", path, t.Name())
	}
	if err != nil {
		t.Fatalf("golden: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (if the change is intended, run go test -run '^%s$' -update-golden and review the diff):\n%s",
			path, t.Name(), goldenDiff(want, got))
	}
}

// goldenDiff shows the first stretch where want and got differ: the lines
// each holds there ("-" golden, "+" got) between a few lines of context.
func goldenDiff(want, got []byte) string {
	const context, maxLines = 3, 15
	w, g := splitLines(want), splitLines(got)
	pre := 0
	for pre < len(w) && pre < len(g) && w[pre] == g[pre] {
		pre++
	}
	suf := 0
	for suf < len(w)-pre && suf < len(g)-pre && w[len(w)-1-suf] == g[len(g)-1-suf] {
		suf++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "first difference at line %d (golden: %d lines, got: %d lines)\n", pre+1, len(w), len(g))
	show := func(prefix string, lines []string) {
		for i, l := range lines {
			if i == maxLines {
				fmt.Fprintf(&b, "%s... %d more lines\n", prefix, len(lines)-i)
				return
			}
			b.WriteString(prefix + visibleLine(l) + "\n")
		}
	}
	show("  ", w[max(0, pre-context):pre])
	show("- ", w[pre:len(w)-suf])
	show("+ ", g[pre:len(g)-suf])
	show("  ", w[len(w)-suf:min(len(w), len(w)-suf+context)])
	return b.String()
}

// splitLines splits after each newline; a last line without one is kept.
func splitLines(b []byte) []string {
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// visibleLine shows a line as it is, or quoted when it holds what a
// terminal would hide: control characters, trailing blanks, a missing newline.
func visibleLine(l string) string {
	s, hasNL := strings.CutSuffix(l, "\n")
	plain := hasNL && strings.TrimRightFunc(s, unicode.IsSpace) == s
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			plain = false
		}
	}
	if plain {
		return s
	}
	if !hasNL {
		return strconv.Quote(s) + " (no newline at end)"
	}
	return strconv.Quote(s)
}
