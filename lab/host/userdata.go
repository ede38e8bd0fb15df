package host

import "regexp"

// authKeyInUserData finds the auth key of `tailscale up --authkey=K`
// (or --auth-key, with "=" or a space) or of TS_AUTHKEY=K.
var authKeyInUserData = regexp.MustCompile(`(?:--auth-?key[= ]+|TS_AUTHKEY=|writeText "tailscale-authkey" )["']?([^\s"']+)`)

// hostNameInUserData finds NixOS's networking.hostName = "name";
var hostNameInUserData = regexp.MustCompile(`networking\.hostName\s*=\s*"([a-z0-9-]+)"`)

// HostNameFromUserData returns the host name an instance's NixOS user data
// sets (networking.hostName = "…";).
func HostNameFromUserData(userData []byte) (string, bool) {
	m := hostNameInUserData.FindSubmatch(userData)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}

// AuthKeyFromUserData returns the tailnet auth key an instance's user data
// joins with, for booting the lab host that stands for the instance:
// `tailscale up --authkey=K` (or --auth-key, "=" or a space),
// TS_AUTHKEY=K, or NixOS's services.tailscale.authKeyFile =
// pkgs.writeText "tailscale-authkey" "K", anywhere in it.
func AuthKeyFromUserData(userData []byte) (string, bool) {
	m := authKeyInUserData.FindSubmatch(userData)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}
