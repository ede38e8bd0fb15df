package nix_test

import (
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/internal/fixtures"
	labnixpkgs "github.com/ducksnest/nestbot/lab/nixpkgs"
	nestnix "github.com/ducksnest/nestbot/nix"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

var updateSudo = flag.Bool("update-sudo", false, "rewrite sudo-commands.json from rollout.SudoCommands")

// TestSudoCommandsAreNestbots: the module's sudo rules are the ones the
// rollout's commands need, from the one list in Go.
func TestSudoCommandsAreNestbots(t *testing.T) {
	want, _ := json.MarshalIndent(rollout.SudoCommands(), "", "  ")
	want = append(want, '\n')
	if *updateSudo {
		if err := os.WriteFile("sudo-commands.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("sudo-commands.json")
	if err != nil || string(got) != string(want) {
		t.Fatalf("sudo-commands.json is stale: run go test ./nix -update-sudo (%v)", err)
	}
}

// writeFS writes fsys under dir.
func writeFS(t *testing.T, fsys fs.FS, dir string) {
	t.Helper()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, p)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.Contains(p, "/bin/") {
			mode = 0o755
		}
		return os.WriteFile(dst, b, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestModuleSetsUpAHost evaluates and builds, with real nix and the lab's
// stand-in nixpkgs, two hosts that use the module as the README shows it
// (the flake's nixosModules.default, enable, flake, key): one logging in
// over OpenSSH as the deploy user, one with Tailscale SSH. It checks what
// each configuration holds, and the sudoers file with visudo.
func TestModuleSetsUpAHost(t *testing.T) {
	fixtures.Require(t, "nix")
	fixtures.Require(t, "git")
	tmp := t.TempDir()
	nixpkgs, nestbot, host := filepath.Join(tmp, "nixpkgs"), filepath.Join(tmp, "nestbot"), filepath.Join(tmp, "host")
	writeFS(t, labnixpkgs.Source, nixpkgs)
	writeFS(t, nestnix.Module, filepath.Join(nestbot, "nix"))
	root, _ := filepath.Abs("../flake.nix")
	flake, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(nestbot, "flake.nix"), flake, 0o644)
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEk5s4Kp1Ld6nNbHc8N9cQ4SyXdZ1J3oFiu2Qx9yq5iA nestbot"
	os.MkdirAll(host, 0o755)
	os.WriteFile(filepath.Join(host, "flake.nix"), []byte(`{
  inputs.nixpkgs.url = "path:`+nixpkgs+`";
  inputs.nestbot.url = "path:`+nestbot+`";
  outputs = { self, nixpkgs, nestbot }:
    let
      host = name: extra: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          { networking.hostName = name; }
          nestbot.nixosModules.default
          { services.nestbot = { enable = true; flake = self; authorizedKeys = [ "`+key+`" ]; } // extra; }
        ];
      };
    in {
      nixosConfigurations.web = host "web" { };
      nixosConfigurations.edge = host "edge" { login = "tailscale"; };
    };
}
`), 0o644)
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", host, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", "-A")
	nixCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("nix", append([]string{"--extra-experimental-features", "nix-command flakes"}, args...)...)
		cmd.Dir = host
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("nix %v: %v\n%s", args, err, stderr)
		}
		return string(out)
	}
	nixCmd("flake", "lock") // the path inputs, locked offline
	git("add", "-A")
	git("commit", "-qm", "hosts")
	rev := git("rev-parse", "HEAD")
	ref := "git+file://" + host
	eval := func(attr string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(nixCmd("eval", "--json", ref+"#nixosConfigurations."+attr)), v); err != nil {
			t.Fatalf("%s: %v", attr, err)
		}
	}

	var sudoers, rev1 string
	eval(`web.config.environment.etc."sudoers".text`, &sudoers)
	eval("web.config.system.configurationRevision", &rev1)
	if rev1 != rev {
		t.Errorf("configurationRevision %q, want the flake's rev %s", rev1, rev)
	}
	for _, rule := range rollout.SudoRules("nestbot") {
		if !strings.Contains(sudoers, rule+"\n") {
			t.Errorf("sudoers lacks %q:\n%s", rule, sudoers)
		}
	}
	if _, err := exec.LookPath("visudo"); err == nil {
		f := filepath.Join(tmp, "sudoers")
		os.WriteFile(f, []byte(sudoers), 0o440)
		if out, err := exec.Command("visudo", "-c", "-f", f).CombinedOutput(); err != nil {
			t.Errorf("visudo: %v: %s", err, out)
		}
	}
	var user struct {
		IsNormalUser bool     `json:"isNormalUser"`
		ExtraGroups  []string `json:"extraGroups"`
		OpenSSH      struct {
			AuthorizedKeys struct {
				Keys []string `json:"keys"`
			} `json:"authorizedKeys"`
		} `json:"openssh"`
	}
	eval("web.config.users.users.nestbot", &user)
	if !user.IsNormalUser || !slices.Equal(user.OpenSSH.AuthorizedKeys.Keys, []string{key}) || !slices.Contains(user.ExtraGroups, "systemd-journal") {
		t.Errorf("the deploy user: %+v", user)
	}
	var sshd bool
	eval("web.config.services.openssh.enable", &sshd)
	var activation struct {
		Deps []string `json:"deps"`
		Text string   `json:"text"`
	}
	eval("web.config.system.activationScripts.nestbot", &activation)
	if !sshd || !strings.Contains(activation.Text, "-o nestbot "+rollout.StateDir) || !slices.Contains(activation.Deps, "users") {
		t.Errorf("openssh enabled %v; activation %q", sshd, activation)
	}

	var upFlags []string
	eval("edge.config.services.tailscale.extraUpFlags", &upFlags)
	var edgeSudoers string
	eval(`edge.config.environment.etc."sudoers".text`, &edgeSudoers)
	var edgeUsers map[string]any
	eval("edge.config.users.users", &edgeUsers)
	if !slices.Contains(upFlags, "--ssh") || strings.Contains(edgeSudoers, "nest-") || edgeUsers["nestbot"] != nil {
		t.Errorf("tailscale login: up flags %v, users %v, sudoers:\n%s", upFlags, edgeUsers, edgeSudoers)
	}

	// Both build into real toplevels.
	out := nixCmd("build", "--json", "--no-link", ref+"#nixosConfigurations.web.config.system.build.toplevel", ref+"#nixosConfigurations.edge.config.system.build.toplevel")
	if strings.Count(out, `"out":"/nix/store/`) != 2 {
		t.Errorf("built %s", out)
	}
}
