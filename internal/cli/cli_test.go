package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// Output is coloured only on a terminal, and never with NO_COLOR set or
// --no-color given (https://no-color.org).
func TestColor(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if Terminal(f) {
		t.Errorf("a regular file is a terminal")
	}
	if Terminal(nil) {
		t.Errorf("no file is a terminal")
	}
	env := map[string]string{}
	terminal := func() bool { return true }
	io := &IO{Getenv: func(k string) string { return env[k] }, IsTerminal: terminal}
	if !io.Color() {
		t.Errorf("no colour on a terminal")
	}
	if (&IO{Getenv: io.Getenv, IsTerminal: func() bool { return Terminal(f) }}).Color() {
		t.Errorf("colour for a regular file")
	}
	if (&IO{Getenv: io.Getenv}).Color() {
		t.Errorf("colour with no terminal check")
	}
	env["NO_COLOR"] = "1"
	if io.Color() {
		t.Errorf("colour with NO_COLOR set")
	}
	delete(env, "NO_COLOR")
	io.NoColor = true
	if io.Color() {
		t.Errorf("colour with --no-color")
	}
}
