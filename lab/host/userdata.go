package host

import "regexp"

// authKeyInUserData finds the auth key of `tailscale up --authkey=K`
// (or --auth-key, with "=" or a space) or of TS_AUTHKEY=K.
var authKeyInUserData = regexp.MustCompile(`(?:--auth-?key[= ]+|TS_AUTHKEY=)["']?([^\s"']+)`)

// AuthKeyFromUserData returns the tailnet auth key an instance's user data
// joins with, for booting the lab host that stands for the instance:
// `tailscale up --authkey=K` (or --auth-key, "=" or a space) or
// TS_AUTHKEY=K, anywhere in it.
func AuthKeyFromUserData(userData []byte) (string, bool) {
	m := authKeyInUserData.FindSubmatch(userData)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}
