package nest

import (
	"os"
	"strings"
	"testing"
)

const botRecipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

func TestWithAdminAddsTheAdminFirstAndKeepsTheRest(t *testing.T) {
	src, err := os.ReadFile("../examples/ducksnest/nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := WithAdmin(src, botRecipient, "nestbot")
	if err != nil {
		t.Fatal(err)
	}
	line := "    - " + botRecipient + "   # nestbot\n"
	if want := strings.Replace(string(src), "  admins:\n", "  admins:\n"+line, 1); string(got) != want {
		t.Errorf("WithAdmin changed more than the one line:\n%s", got)
	}
	f, err := Parse("nest.yaml", got)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.PKI.Admins) != 2 || f.PKI.Admins[0] != botRecipient {
		t.Errorf("admins %v, want %s first of two", f.PKI.Admins, botRecipient)
	}
	again, err := WithAdmin(got, "age14zzepmfg3quqwpzzl4222cpcsyn2raxx69wqa0vctdr70qnh9cqs98v583", "")
	if err != nil || !strings.Contains(string(again), "  admins:\n    - age14zzepmfg3quqwpzzl4222cpcsyn2raxx69wqa0vctdr70qnh9cqs98v583\n"+line) {
		t.Errorf("a second admin without a comment: %v\n%s", err, again)
	}
}

func TestWithAdminRefusesWhatItCannotEditInPlace(t *testing.T) {
	for name, src := range map[string]string{
		"no pki":      "version: 1\nname: tiny\nhosts: {box: {roles: [worker]}}\n",
		"flow list":   "version: 1\npki:\n  dir: certs\n  admins: [" + botRecipient + "]\n",
		"empty list":  "version: 1\npki:\n  dir: certs\n  admins: []\n",
		"not yaml":    "version: [1\n",
		"not a map":   "- 1\n",
		"pki scalar":  "pki: none\n",
		"admins null": "pki:\n  admins:\n",
	} {
		if got, err := WithAdmin([]byte(src), botRecipient, "nestbot"); err == nil {
			t.Errorf("%s: accepted:\n%s", name, got)
		}
	}
	if _, err := WithAdmin([]byte("pki:\n  admins:\n    - "+botRecipient+"\n"), "not-a-key", ""); err == nil {
		t.Error("a recipient that is not one was accepted")
	}
}
