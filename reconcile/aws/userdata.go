package aws

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// UserData renders the user-data of a new instance: a NixOS configuration
// that the NixOS AMI's amazon-init applies on first boot. It sets the host
// name (networking.hostName, which tailscale names the node after unless
// tailnet_name asks for --hostname) and
// joins the tailnet with authKey, so that nestbot can log in the way
// nest.yaml says before the host's own configuration is applied: with
// Tailscale SSH (tailscale up --ssh; the tailnet policy's ssh rule decides
// who may), or over OpenSSH as the deploy user, whose authorized key is
// deployKey (nestbot's public key) and whose sudo rules are
// rollout.SudoRules. The result holds a secret: it is passed to
// RunInstances and nowhere else — never logged, planned or saved.
func UserData(f *nest.Fleet, h *nest.Host, authKey, deployKey string) string {
	login := f.Login(h)
	var flags []string
	if login.Via == nest.SSHViaTailscale {
		flags = append(flags, "--ssh")
	}
	if node := h.TailnetNode(); node != h.NetworkingHostName() {
		flags = append(flags, "--hostname="+node)
	}
	if len(f.Tailnet.Tags) > 0 {
		flags = append(flags, "--advertise-tags="+strings.Join(f.Tailnet.Tags, ","))
	}
	if f.Tailnet.ControlURL != "" {
		flags = append(flags, "--login-server="+f.Tailnet.ControlURL)
	}
	quoted := make([]string, len(flags))
	for i, fl := range flags {
		quoted[i] = strconv.Quote(fl)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### nestbot user-data: fleet %s, host %s\n", f.Name, h.Name)
	b.WriteString("{ config, pkgs, modulesPath, ... }:\n{\n")
	b.WriteString("  imports = [ \"${modulesPath}/virtualisation/amazon-image.nix\" ];\n")
	fmt.Fprintf(&b, "  networking.hostName = %s;\n", strconv.Quote(h.NetworkingHostName()))
	b.WriteString("  services.tailscale.enable = true;\n")
	fmt.Fprintf(&b, "  services.tailscale.authKeyFile = pkgs.writeText \"tailscale-authkey\" %s;\n", strconv.Quote(authKey))
	fmt.Fprintf(&b, "  services.tailscale.extraUpFlags = [ %s ];\n", strings.Join(quoted, " "))
	b.WriteString("  services.openssh.enable = true;\n")
	if login.Via == nest.SSHViaOpenSSH && login.User != "root" {
		fmt.Fprintf(&b, "  users.users.%s = { isNormalUser = true; extraGroups = [ \"systemd-journal\" ]; openssh.authorizedKeys.keys = [ %s ]; };\n",
			strconv.Quote(login.User), strconv.Quote(deployKey))
		fmt.Fprintf(&b, "  security.sudo.extraConfig = %s;\n", strconv.Quote(strings.Join(rollout.SudoRules(login.User), "\n")+"\n"))
		fmt.Fprintf(&b, "  systemd.tmpfiles.rules = [ %s ];\n", strconv.Quote("d "+rollout.StateDir+" 0755 "+login.User+" root -"))
		b.WriteString("  environment.systemPackages = [ pkgs.git ];\n")
	}
	if h.AWS.UserData != nil {
		for _, line := range strings.Split(strings.TrimRight(*h.AWS.UserData, "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// EncodeUserData is the base64 form RunInstances takes.
func EncodeUserData(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
