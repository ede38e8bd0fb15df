package certtree

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCheckHostKey(t *testing.T) {
	a, b := newSSHKey(t), newSSHKey(t)
	if err := CheckHostKey("h", "", a.pub); err != nil {
		t.Errorf("unpinned: %v", err)
	}
	if err := CheckHostKey("h", a.pub+" root@h", a.pub+" other-comment\n"); err != nil {
		t.Errorf("same key, other comment: %v", err)
	}
	err := CheckHostKey("h", a.pub, b.pub)
	if !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("changed key: %v", err)
	}
	var changed *HostKeyChangedError
	if !errors.As(err, &changed) || changed.Host != "h" || changed.Pinned != Fingerprint(a.pub) || changed.Learned != Fingerprint(b.pub) {
		t.Fatalf("error %+v", changed)
	}
	for _, want := range []string{"host h", Fingerprint(a.pub), Fingerprint(b.pub), "hosts/h.pub"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !strings.HasPrefix(Fingerprint(a.pub), "SHA256:") {
		t.Errorf("fingerprint %q", Fingerprint(a.pub))
	}
	if err := CheckHostKey("h", a.pub, "ssh-rsa AAAAB3NzaC1yc2E"); err == nil || errors.Is(err, ErrHostKeyChanged) {
		t.Errorf("non-ed25519 learned key: %v", err)
	}
}

func TestPinHostKey(t *testing.T) {
	dir := t.TempDir()
	a, b := newSSHKey(t), newSSHKey(t)
	if err := PinHostKey(Dir(dir), "h", a.pub+" root@h"); err != nil {
		t.Fatal(err)
	}
	keys, err := ReadHostKeys(dir, []string{"h"})
	if err != nil || keys["h"] != a.pub {
		t.Fatalf("pinned %q, %v", keys, err)
	}
	if err := PinHostKey(Dir(dir), "h", a.pub); err != nil {
		t.Errorf("pinning the same key again: %v", err)
	}
	if err := PinHostKey(Dir(dir), "h", b.pub); !errors.Is(err, ErrHostKeyChanged) {
		t.Errorf("a different key was pinned over the old one: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "hosts", "h.pub"))
	if strings.TrimSpace(string(data)) != a.pub {
		t.Errorf("pinned file now %q", data)
	}
}

// TestReadHostKeysOfAFleetReadsAsOneReader: a fleet large enough to be
// read by several goroutines gets the keys, and the errors in the hosts'
// order, that one reader of the same tree gets.
func TestReadHostKeysOfAFleetReadsAsOneReader(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "hosts"), 0o755); err != nil {
		t.Fatal(err)
	}
	key := newSSHKey(t).pub
	var hosts []string
	for i := range 3 * hostKeysPerReader {
		h := fmt.Sprintf("h%04d", i)
		hosts = append(hosts, h)
		content := key + "\n"
		switch {
		case i%7 == 3:
			continue // not pinned yet
		case i%500 == 1:
			content = "not a key\n"
		}
		if err := os.WriteFile(filepath.Join(dir, HostKeyPath(h)), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slices.Reverse(hosts)
	got, err := ReadHostKeys(dir, hosts)
	want, wantErr := ReadHostKeysFS(os.DirFS(dir), dir, hosts)
	if !maps.Equal(got, want) || len(got) == 0 {
		t.Errorf("read %d keys, one reader %d", len(got), len(want))
	}
	if err == nil || wantErr == nil || err.Error() != wantErr.Error() {
		t.Errorf("errors:\n%v\none reader's:\n%v", err, wantErr)
	}
}
