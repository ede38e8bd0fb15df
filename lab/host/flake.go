package host

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"

	nestnix "github.com/ducksnest/nestbot/nix"
)

// A FlakeHost is one host of a flake FlakeFiles writes, configured as the
// DucksNest hosts are: Tailscale on, OpenSSH with AllowUsers (the admins
// and the deploy user), PermitRootLogin no, keys only; the admins in wheel
// with a sudo password; the deploy user with its keys and NOPASSWD sudo
// rules nestbot's NixOS module gives it (nix/module.nix).
type FlakeHost struct {
	Attribute  string   // nixosConfigurations.<Attribute>
	HostName   string   // networking.hostName (default Attribute)
	Admins     []string // default duck
	DeployUser string   // default nestbot
	DeployKeys []string // authorized_keys lines
	// Module is more of the host's configuration, a Nix attribute set's
	// body (e.g. `services.openssh.settings.PermitRootLogin = "yes";`).
	Module string
	// NoRevision leaves system.configurationRevision unset, as a flake
	// that does not set it (the DucksNest flake) has it.
	NoRevision bool
}

// AdminPassword is the lab admins' sudo password (its hash is in their
// configuration).
const AdminPassword = "duckduck"

const adminPasswordHash = "$6$nestlablab$LVfPSNv1stvLSoKp/etU14QnR3886kF9nGNqI7pToYUKV.Bue1DCan8CgM9Tq1C0XWAMfoa5sZEsJO.Ukt7Sm1"

// FlakeFiles is a flake (flake.nix, flake.lock, hosts/<attribute>.nix)
// with nixosConfigurations for hosts, on the lab's nixpkgs stand-in. Its
// configurationRevision is the flake's own rev when built from git, else
// the content of .nest-revision beside flake.nix if there is one (how
// nestbot ships a commit today), else unset.
func FlakeFiles(inputs []Input, hosts ...FlakeHost) map[string]string {
	files := map[string]string{"flake.lock": FlakeLock(inputs, "nixpkgs")}
	// nestbot's NixOS module (nix/), as a flake that imports it by path
	// would have it: the deploy user, its sudo rules, /var/lib/nestbot.
	for _, name := range []string{"module.nix", "sudo-commands.json"} {
		b, err := fs.ReadFile(nestnix.Module, name)
		if err != nil {
			panic("host: nestbot's module: " + err.Error()) // embedded: a build mistake
		}
		files["nestbot/"+name] = string(b)
	}
	var b strings.Builder
	b.WriteString(`{
  description = "lab hosts";
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
  outputs = { self, nixpkgs }:
    let
      revision = self.rev or (if builtins.pathExists ./.nest-revision
        then nixpkgs.lib.fileContents ./.nest-revision else null);
      host = file: extra: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [ file extra ];
      };
    in {
      nixosConfigurations = {
`)
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Attribute < hosts[j].Attribute })
	for _, h := range hosts {
		rev := "{ system.configurationRevision = revision; }"
		if h.NoRevision {
			rev = "{ }"
		}
		fmt.Fprintf(&b, "        %q = host ./hosts/%s.nix %s;\n", h.Attribute, h.Attribute, rev)
		files["hosts/"+h.Attribute+".nix"] = hostModule(h)
	}
	b.WriteString("      };\n    };\n}\n")
	files["flake.nix"] = b.String()
	return files
}

func hostModule(h FlakeHost) string {
	hostName := orDefault(h.HostName, h.Attribute)
	admins := h.Admins
	if admins == nil {
		admins = []string{"duck"}
	}
	deploy := orDefault(h.DeployUser, DefaultDeployUser)
	var b strings.Builder
	fmt.Fprintf(&b, "{ lib, pkgs, ... }:\n{\n  networking.hostName = %q;\n", hostName)
	b.WriteString("  services.tailscale.enable = true;\n  services.openssh.enable = true;\n")
	b.WriteString("  services.openssh.settings = {\n    PermitRootLogin = \"no\";\n    PasswordAuthentication = false;\n    KbdInteractiveAuthentication = false;\n")
	fmt.Fprintf(&b, "    AllowUsers = [ %s ];\n  };\n", nixStrings(append(append([]string(nil), admins...), deploy)))
	for _, a := range admins {
		fmt.Fprintf(&b, "  users.users.%q = { isNormalUser = true; extraGroups = [ \"wheel\" ]; hashedPassword = %q; };\n", a, adminPasswordHash)
	}
	// The deploy user, its key and sudo rules: nestbot's NixOS module.
	fmt.Fprintf(&b, "  imports = [ ../nestbot/module.nix ];\n")
	fmt.Fprintf(&b, "  services.nestbot = { enable = true; user = %q; authorizedKeys = [ %s ]; };\n", deploy, nixStrings(h.DeployKeys))
	if h.Module != "" {
		b.WriteString("  " + strings.TrimSpace(h.Module) + "\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func nixStrings(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, " ")
}
