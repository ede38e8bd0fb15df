package command

import (
	"slices"
	"strings"
	"testing"
	"unicode"
)

func TestFields(t *testing.T) {
	for _, tc := range []struct {
		body string
		args []string
		ok   bool
	}{
		{"/nest plan", []string{"plan"}, true},
		{"/nest apply now\nthanks", []string{"apply", "now"}, true},
		{"/nest", []string{}, true},
		{" /nest\tUNLOCK ", []string{"UNLOCK"}, true},
		{"\n/nest plan", nil, false}, // the first line is blank
		{"/nestplan", nil, false},
		{"please /nest plan", nil, false},
		{"", nil, false},
	} {
		args, ok := Fields(tc.body)
		if ok != tc.ok || !slices.Equal(args, tc.args) || (ok && args == nil) {
			t.Errorf("Fields(%q) = %q, %v; want %q, %v", tc.body, args, ok, tc.args, tc.ok)
		}
	}
}

// FuzzFields: a body is a command exactly when its first line's first word
// is /nest, and the arguments are that line's other words, unchanged.
func FuzzFields(f *testing.F) {
	for _, s := range []string{"/nest plan", "/nest apply now\nthanks", "/nest", " /nest\tUNLOCK ", "nope", "/nestplan", "\x00/nest", "\u00a0/nest plan"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		args, ok := Fields(body)
		line, _, _ := strings.Cut(body, "\n")
		words := strings.Fields(line)
		if ok != (len(words) > 0 && words[0] == "/nest") {
			t.Fatalf("%q: ok %v, first line's words %q", body, ok, words)
		}
		if !ok {
			if args != nil {
				t.Fatalf("%q: not a command, yet args %q", body, args)
			}
			return
		}
		if !slices.Equal(args, words[1:]) {
			t.Fatalf("%q: args %q, want %q", body, args, words[1:])
		}
		for _, a := range args {
			if a == "" || strings.ContainsFunc(a, unicode.IsSpace) {
				t.Fatalf("%q: argument %q is empty or holds space", body, a)
			}
		}
	})
}
