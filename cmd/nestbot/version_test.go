package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/internal/buildinfo"
)

// TestVersionAndVersionFlag: nestbot version and nestbot --version print
// the same four things, and never a bare "(devel)".
func TestVersionAndVersionFlag(t *testing.T) {
	code, verb, errOut := runCLI(t, nil, "version")
	if code != 0 {
		t.Fatalf("version: exit %d: %s", code, errOut)
	}
	code, flag, errOut := runCLI(t, nil, "--version")
	if code != 0 {
		t.Fatalf("--version: exit %d: %s", code, errOut)
	}
	if verb != flag {
		t.Errorf("version printed\n%s\n--version printed\n%s", verb, flag)
	}
	in := buildinfo.Read()
	for _, want := range []string{"nestbot " + in.Version + "\n", "\n  commit  ", "\n  go      " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"} {
		if !strings.Contains(verb, want) {
			t.Errorf("version lacks %q:\n%s", want, verb)
		}
	}
	if strings.Contains(verb, "(devel)") {
		t.Errorf("version says (devel):\n%s", verb)
	}
}

func TestVersionJSON(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "version", "--json")
	var got buildinfo.Info
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %s%s", code, err, out, errOut)
	}
	if got != buildinfo.Read() {
		t.Errorf("version --json = %+v, want %+v", got, buildinfo.Read())
	}
}
