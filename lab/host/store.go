package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ducksnest/nestbot/lab/agenix"
	"github.com/ducksnest/nestbot/lab/nixpkgs"
)

// The hosts' nix store: one, shared by every host of every lab on the
// machine (bound into each at /nix/store with its database; each host keeps
// its own profiles), kept in the cache. The machine's nix (Debian's
// nix-bin) puts the stand-in flakes into it, as a chroot store.

// Input is a flake input the lab stands in for: its locked reference, as a
// flake.lock holds it, and its source in the hosts' store.
type Input struct {
	Name  string // the input's name in flake.nix: nixpkgs, agenix
	Owner string // github owner and repository it stands for
	Repo  string
	Ref   string // the branch flake.nix names ("" for none)
	Rev   string // the locked revision (made up, fixed)
	// LastModified is the lock's lastModified, fixed.
	LastModified int64
	NarHash      string // the stand-in's NAR hash, SRI form
	StorePath    string // /nix/store/<hash>-source
}

// Inputs are the stand-ins a host's flake may lock: nixpkgs and agenix.
// A lock whose narHash is the stand-in's resolves offline, because nix
// finds the source already in the store.
var standIns = []struct {
	in  Input
	src fs.FS
}{
	{Input{Name: "nixpkgs", Owner: "NixOS", Repo: "nixpkgs", Ref: "nixos-25.05", Rev: "88983d4b665fb491861005137ce2b11a9f89f203", LastModified: 1751943650}, nixpkgs.Source},
	{Input{Name: "agenix", Owner: "ryantm", Repo: "agenix", Rev: "531beac616433bac6f9e2a19feb8e99a22a66baf", LastModified: 1745630506}, agenix.Source},
}

// nixFlags turn on flakes in Debian's nix 2.8 and keep it offline.
var nixFlags = []string{"--extra-experimental-features", "nix-command flakes", "--option", "sandbox", "false", "--option", "substituters", ""}

// StoreDir is the hosts' nix store root in the cache (its nix/store and
// nix/var/nix/db), with the stand-ins in it, and the stand-ins' inputs.
func StoreDir(ctx context.Context) (string, []Input, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", nil, err
	}
	root := filepath.Join(cache, "store")
	var inputs []Input
	err = withLock(cache, "store", func() error {
		for _, s := range standIns {
			in, err := addSource(ctx, cache, root, s.in, s.src)
			if err != nil {
				return fmt.Errorf("%s: %w", s.in.Name, err)
			}
			if err := addHere(ctx, cache, in, s.src); err != nil {
				return fmt.Errorf("%s: %w", s.in.Name, err)
			}
			inputs = append(inputs, in)
		}
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("host: nix store: %w", err)
	}
	return root, inputs, nil
}

// addSource writes src out as a directory named source (the name flakes'
// sources have in the store) and adds it to the store at root.
func addSource(ctx context.Context, cache, root string, in Input, src fs.FS) (Input, error) {
	sum, err := treeSum(src)
	if err != nil {
		return in, err
	}
	dir := filepath.Join(cache, "inputs", in.Name+"-"+sum[:16], "source")
	meta := filepath.Join(filepath.Dir(dir), "input.json")
	if b, err := os.ReadFile(meta); err == nil {
		var got Input
		if json.Unmarshal(b, &got) == nil && got.NarHash != "" {
			if _, err := os.Stat(filepath.Join(root, got.StorePath)); err == nil {
				return got, nil
			}
		}
	}
	os.RemoveAll(dir)
	if err := writeTree(src, dir); err != nil {
		return in, err
	}
	if _, err := exec.LookPath("nix"); err != nil {
		return in, fmt.Errorf("nix is not installed on this machine (apt-get install nix-bin)")
	}
	out, err := exec.CommandContext(ctx, "nix", append(slicesClone(nixFlags), "--store", root, "store", "add-path", "--name", "source", dir)...).CombinedOutput()
	if err != nil {
		return in, fmt.Errorf("nix store add-path: %v: %s", err, tail(out))
	}
	in.StorePath = strings.TrimSpace(lastLine(string(out)))
	out, err = exec.CommandContext(ctx, "nix", append(slicesClone(nixFlags), "hash", "path", dir)...).Output()
	if err != nil {
		return in, fmt.Errorf("nix hash path: %v", err)
	}
	in.NarHash = strings.TrimSpace(string(out))
	b, _ := json.Marshal(in)
	return in, os.WriteFile(meta, b, 0o644)
}

// addHere puts a stand-in into the nix store of this machine too, where
// nestbot runs, as a machine that fetched nixpkgs and agenix once has them:
// nestbot's nix eval of each host's toplevel (and build_on local) then
// resolves a flake.lock that locks them offline. The store path is the
// hosts' one: both stores are /nix/store and the path is the content's.
func addHere(ctx context.Context, cache string, in Input, src fs.FS) error {
	if _, err := os.Stat(in.StorePath); err == nil {
		return nil
	}
	sum, err := treeSum(src)
	if err != nil {
		return err
	}
	dir := filepath.Join(cache, "inputs", in.Name+"-"+sum[:16], "source")
	out, err := exec.CommandContext(ctx, "nix", append(slicesClone(nixFlags), "store", "add-path", "--name", "source", dir)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nix store add-path (this machine's store): %v: %s", err, tail(out))
	}
	if got := strings.TrimSpace(lastLine(string(out))); got != in.StorePath {
		return fmt.Errorf("nix store add-path put the stand-in at %s here, but at %s in the hosts' store", got, in.StorePath)
	}
	return nil
}

// writeTree writes src under dir, files 0644 and directories 0755 (a NAR
// keeps only the executable bit, so the hash depends on the content only).
func writeTree(src fs.FS, dir string) error {
	return fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// treeSum is a digest of src's paths and contents.
func treeSum(src fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// FlakeLock is a flake.lock for a flake whose inputs are the stand-ins
// named (nixpkgs, agenix), locked as github inputs at the stand-ins' NAR
// hashes, as `nix flake lock` writes it.
func FlakeLock(inputs []Input, names ...string) string {
	type ref struct {
		LastModified int64  `json:"lastModified,omitempty"`
		NarHash      string `json:"narHash,omitempty"`
		Owner        string `json:"owner"`
		Ref          string `json:"ref,omitempty"`
		Repo         string `json:"repo"`
		Rev          string `json:"rev,omitempty"`
		Type         string `json:"type"`
	}
	type node struct {
		Inputs   map[string]string `json:"inputs,omitempty"`
		Locked   *ref              `json:"locked,omitempty"`
		Original *ref              `json:"original,omitempty"`
	}
	nodes := map[string]node{}
	root := node{Inputs: map[string]string{}}
	for _, in := range inputs {
		if !containsString(names, in.Name) {
			continue
		}
		root.Inputs[in.Name] = in.Name
		nodes[in.Name] = node{
			Locked:   &ref{LastModified: in.LastModified, NarHash: in.NarHash, Owner: in.Owner, Repo: in.Repo, Rev: in.Rev, Type: "github"},
			Original: &ref{Owner: in.Owner, Ref: in.Ref, Repo: in.Repo, Type: "github"},
		}
	}
	nodes["root"] = root
	b, _ := json.MarshalIndent(map[string]any{"nodes": nodes, "root": "root", "version": 7}, "", "  ")
	return string(b) + "\n"
}

func containsString(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func slicesClone(xs []string) []string { return append([]string(nil), xs...) }

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
