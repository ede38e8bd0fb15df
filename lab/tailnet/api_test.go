package tailnet_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/lab/tailnet"
	"tailscale.com/tsnet"
)

// call makes one API request with token as a Bearer token (none if empty)
// and decodes the JSON answer into a map.
func call(t testing.TB, lab *tailnet.Lab, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, lab.APIURL()+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if b, _ := io.ReadAll(res.Body); len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %d, not JSON: %q", method, path, res.StatusCode, b)
		}
	}
	return res.StatusCode, out
}

// oauthToken trades an OAuth client's secret for an access token.
func oauthToken(t *testing.T, lab *tailnet.Lab, id, secret, scope string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	if scope != "" {
		form.Set("scope", scope)
	}
	res, err := http.PostForm(lab.APIURL()+"/api/v2/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

type keyCaps struct {
	Reusable, Ephemeral, Preauthorized bool
	Tags                               []string
}

// keyBody is a POST .../keys body in the API's shape.
func keyBody(c keyCaps, expirySeconds int, description string) map[string]any {
	return map[string]any{
		"capabilities": map[string]any{"devices": map[string]any{"create": map[string]any{
			"reusable": c.Reusable, "ephemeral": c.Ephemeral, "preauthorized": c.Preauthorized, "tags": c.Tags}}},
		"expirySeconds": expirySeconds,
		"description":   description,
	}
}

func TestAPIAuthenticationAndScopes(t *testing.T) {
	lab := startLab(t, &tailnet.Lab{Tags: []string{"tag:nest"}})
	if !strings.HasPrefix(lab.APIURL(), "http://127.0.0.1:") {
		t.Fatalf("APIURL = %q, want http://127.0.0.1:port", lab.APIURL())
	}
	devices := "/api/v2/tailnet/-/devices"

	if st, out := call(t, lab, "", "GET", devices, nil); st != 401 || out["message"] != "API token invalid" {
		t.Errorf("no token: %d %v, want 401 API token invalid", st, out)
	}
	if st, _ := call(t, lab, "tskey-api-wrong", "GET", devices, nil); st != 401 {
		t.Errorf("wrong token: %d, want 401", st)
	}
	if st, out := call(t, lab, lab.APIKey(), "GET", devices, nil); st != 200 || out["devices"] == nil {
		t.Errorf("API key: %d %v, want 200 with devices", st, out)
	}
	// Basic auth with the key as user name, as the v2 client sends it.
	req, _ := http.NewRequest("GET", lab.APIURL()+devices, nil)
	req.SetBasicAuth(lab.APIKey(), "")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Errorf("API key over Basic auth: %v %v, want 200", res.Status, err)
	} else {
		res.Body.Close()
	}
	if st, out := call(t, lab, lab.APIKey(), "GET", "/api/v2/tailnet/other.example/devices", nil); st != 404 || !strings.Contains(out["message"].(string), lab.TailnetName()) {
		t.Errorf("other tailnet: %d %v, want 404 naming this one", st, out)
	}
	if st, out := call(t, lab, lab.APIKey(), "GET", "/api/v2/tailnet/-/acl", nil); st != 404 || !strings.Contains(out["message"].(string), "does not implement GET /api/v2/tailnet/-/acl") {
		t.Errorf("unknown endpoint: %d %v, want 404 saying it is not implemented", st, out)
	}

	id, secret := lab.OAuthClient()
	if st, out := oauthToken(t, lab, id, secret+"x", ""); st != 401 || out["error"] != "invalid_client" {
		t.Errorf("wrong secret: %d %v, want 401 invalid_client", st, out)
	}
	if st, out := oauthToken(t, lab, id, secret, "dns:read"); st != 400 || out["error"] != "invalid_scope" {
		t.Errorf("scope not granted: %d %v, want 400 invalid_scope", st, out)
	}
	st, tok := oauthToken(t, lab, id, secret, "")
	if st != 200 || tok["token_type"] != "Bearer" || tok["expires_in"] != 3600.0 || tok["scope"] != "auth_keys devices:core" ||
		!strings.HasPrefix(tok["access_token"].(string), "tskey-api-") {
		t.Fatalf("token: %d %v, want a Bearer token for an hour with auth_keys devices:core", st, tok)
	}
	access := tok["access_token"].(string)
	if st, _ := call(t, lab, access, "GET", devices, nil); st != 200 {
		t.Errorf("devices with the OAuth token: %d, want 200", st)
	}

	// A read-only client may list devices, and neither mint keys nor delete.
	roID, roSecret := lab.NewOAuthClient([]string{tailnet.ScopeDevicesRead}, []string{"tag:nest"})
	_, ro := oauthToken(t, lab, roID, roSecret, "")
	roTok := ro["access_token"].(string)
	if st, _ := call(t, lab, roTok, "GET", devices, nil); st != 200 {
		t.Errorf("read-only list: %d, want 200", st)
	}
	if st, _ := call(t, lab, roTok, "POST", "/api/v2/tailnet/-/keys", keyBody(keyCaps{Tags: []string{"tag:nest"}}, 60, "")); st != 403 {
		t.Errorf("read-only mint: %d, want 403", st)
	}
	if st, _ := call(t, lab, roTok, "DELETE", "/api/v2/device/1", nil); st != 403 {
		t.Errorf("read-only delete: %d, want 403", st)
	}
}

func TestAPIKeyRequests(t *testing.T) {
	lab := startLab(t, &tailnet.Lab{Tags: []string{"tag:nest", "tag:bot"}})
	id, secret := lab.OAuthClient()
	_, tok := oauthToken(t, lab, id, secret, "")
	access := tok["access_token"].(string)
	keys := "/api/v2/tailnet/-/keys"

	for _, c := range []struct {
		name  string
		token string
		body  map[string]any
		want  string
	}{
		{"OAuth, no tags", access, keyBody(keyCaps{}, 60, ""), "must have tags"},
		{"undefined tag", access, keyBody(keyCaps{Tags: []string{"tag:web"}}, 60, ""), "not permitted"},
		{"not a tag", lab.APIKey(), keyBody(keyCaps{Tags: []string{"nest"}}, 60, ""), "start with tag:"},
		{"bad description", access, keyBody(keyCaps{Tags: []string{"tag:nest"}}, 60, "nestbot/x"), "description"},
		{"too long", access, keyBody(keyCaps{Tags: []string{"tag:nest"}}, 91*24*3600, ""), "maximum"},
	} {
		if st, out := call(t, lab, c.token, "POST", keys, c.body); st != 400 || !strings.Contains(out["message"].(string), c.want) {
			t.Errorf("%s: %d %v, want 400 saying %q", c.name, st, out, c.want)
		}
	}

	st, k := call(t, lab, access, "POST", lab.APIURL()[:0]+"/api/v2/tailnet/"+lab.TailnetName()+"/keys",
		keyBody(keyCaps{Preauthorized: true, Tags: []string{"tag:nest"}}, 3600, "nestbot ducksnest web"))
	if st != 200 {
		t.Fatalf("mint: %d %v", st, k)
	}
	create := k["capabilities"].(map[string]any)["devices"].(map[string]any)["create"].(map[string]any)
	created, _ := time.Parse(time.RFC3339, k["created"].(string))
	expires, _ := time.Parse(time.RFC3339, k["expires"].(string))
	if !strings.HasPrefix(k["key"].(string), "tskey-auth-"+k["id"].(string)+"-") || k["keyType"] != "auth" ||
		k["description"] != "nestbot ducksnest web" || k["expirySeconds"] != 3600.0 || expires.Sub(created) != time.Hour ||
		create["reusable"] != false || create["preauthorized"] != true || !slices.Equal(anyStrings(create["tags"]), []string{"tag:nest"}) {
		t.Errorf("minted key %v: want an auth key tskey-auth-<id>-…, an hour, one-off, preauthorized, tagged tag:nest", k)
	}
	// An API access token (a person's) may mint an untagged key.
	if st, _ := call(t, lab, lab.APIKey(), "POST", keys, keyBody(keyCaps{}, 0, "")); st != 200 {
		t.Errorf("untagged key with the API key: %d, want 200", st)
	}
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// mint mints a key with the lab's API key.
func mint(t testing.TB, lab *tailnet.Lab, c keyCaps) string {
	t.Helper()
	st, k := call(t, lab, lab.APIKey(), "POST", "/api/v2/tailnet/-/keys", keyBody(c, 600, "test"))
	if st != 200 {
		t.Fatalf("mint: %d %v", st, k)
	}
	return k["key"].(string)
}

func TestMintedKeyJoinsOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := startLab(t, &tailnet.Lab{Tags: []string{"tag:nest", "tag:bot"}})
	oneOff := mint(t, lab, keyCaps{Preauthorized: true, Tags: []string{"tag:nest"}})

	// The node asks for no tags: it gets the key's, as with Tailscale.
	web := join(t, ctx, lab, tailnet.NodeConfig{Hostname: "web", AuthKey: oneOff})
	bot := join(t, ctx, lab, tailnet.NodeConfig{Hostname: "bot", InMemory: true, Ephemeral: true, Tags: []string{"tag:bot"}})
	nodes, err := tailnet.Nodes(ctx, bot)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[1].Name != "web" || !slices.Equal(nodes[1].Tags, []string{"tag:nest"}) {
		t.Fatalf("bot sees %+v, want web tagged tag:nest (the key's tags)", nodes)
	}
	// Its tags stay the key's after later map updates.
	if st, err := web.Up(ctx); err != nil || !slices.Equal(st.Self.Tags.AsSlice(), []string{"tag:nest"}) {
		t.Fatalf("web's own status: %v, %v; want tagged tag:nest", st, err)
	}

	s, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: "web2", Dir: t.TempDir(), AuthKey: oneOff})
	if err == nil {
		s.Close()
		t.Fatal("a second node joined with a one-off key")
	}
	if !strings.Contains(err.Error(), "already used") {
		t.Errorf("second join: %v, want it to say the key was already used", err)
	}

	reusable := mint(t, lab, keyCaps{Reusable: true, Ephemeral: true, Tags: []string{"tag:nest"}})
	join(t, ctx, lab, tailnet.NodeConfig{Hostname: "ci-1", AuthKey: reusable})
	join(t, ctx, lab, tailnet.NodeConfig{Hostname: "ci-2", AuthKey: reusable, Tags: []string{"tag:nest"}})
	s, err = lab.Join(ctx, tailnet.NodeConfig{Hostname: "ci-3", Dir: t.TempDir(), AuthKey: reusable, Tags: []string{"tag:bot"}})
	if err == nil {
		s.Close()
		t.Fatal("a node asking for tags its key does not grant joined")
	}
	if !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("join with other tags: %v, want not permitted", err)
	}

	_, list := call(t, lab, lab.APIKey(), "GET", "/api/v2/tailnet/-/devices", nil)
	byHost := map[string]map[string]any{}
	for _, d := range list["devices"].([]any) {
		d := d.(map[string]any)
		byHost[d["hostname"].(string)] = d
	}
	if len(byHost) != 4 {
		t.Fatalf("devices %v, want web, bot, ci-1, ci-2", list)
	}
	if d := byHost["ci-1"]; d["isEphemeral"] != true || byHost["web"]["isEphemeral"] != false {
		t.Errorf("ci-1 isEphemeral=%v, web isEphemeral=%v; want the key's ephemerality", d["isEphemeral"], byHost["web"]["isEphemeral"])
	}
	if bot := byHost["bot"]; bot["isEphemeral"] != true {
		t.Errorf("bot isEphemeral=%v, want true (it asked)", bot["isEphemeral"])
	}
}

func TestDeviceListShape(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := startLab(t, &tailnet.Lab{Tags: []string{"tag:nest"}, MagicDNSDomain: "ducks.ts.net"})
	web := join(t, ctx, lab, tailnet.NodeConfig{Hostname: "web", Tags: []string{"tag:nest"}})
	testkit.WaitForContext(t, ctx, "web connected to control", func() bool {
		d := device(t, lab, "web")
		return d != nil && d["connectedToControl"] == true
	})
	d := device(t, lab, "web")
	addrs := anyStrings(d["addresses"])
	if d["name"] != "web.ducks.ts.net" || len(addrs) != 2 || !strings.HasPrefix(addrs[0], "100.") ||
		!strings.HasPrefix(d["nodeId"].(string), "TESTCTRL") || d["id"] == "" || d["authorized"] != true ||
		!slices.Equal(anyStrings(d["tags"]), []string{"tag:nest"}) || d["os"] != "linux" ||
		!strings.HasPrefix(d["machineKey"].(string), "mkey:") || !strings.HasPrefix(d["nodeKey"].(string), "nodekey:") ||
		d["lastSeen"] != nil {
		t.Errorf("device %v: want web.ducks.ts.net with two addresses, tagged, connected, no lastSeen", d)
	}
	if st, one := call(t, lab, lab.APIKey(), "GET", "/api/v2/device/"+d["nodeId"].(string), nil); st != 200 || one["hostname"] != "web" {
		t.Errorf("GET device: %d %v", st, one)
	}

	web.Close()
	testkit.WaitForContext(t, ctx, "web disconnected", func() bool {
		d := device(t, lab, "web")
		return d != nil && d["connectedToControl"] == false && d["lastSeen"] != nil
	})
}

// device is the device whose hostname is host in the API's list, or nil.
func device(t *testing.T, lab *tailnet.Lab, host string) map[string]any {
	t.Helper()
	st, list := call(t, lab, lab.APIKey(), "GET", "/api/v2/tailnet/-/devices", nil)
	if st != 200 {
		t.Fatalf("devices: %d %v", st, list)
	}
	for _, d := range list["devices"].([]any) {
		if d := d.(map[string]any); d["hostname"] == host {
			return d
		}
	}
	return nil
}

func peerNames(t *testing.T, ctx context.Context, s *tsnet.Server) []string {
	t.Helper()
	nodes, err := tailnet.Nodes(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range nodes {
		if !n.Self {
			out = append(out, n.Name)
		}
	}
	return out
}

func TestDeleteDevice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := startLab(t, &tailnet.Lab{Tags: []string{"tag:nest", "tag:bot"}})
	bot := join(t, ctx, lab, tailnet.NodeConfig{Hostname: "bot", InMemory: true, Ephemeral: true, Tags: []string{"tag:bot"}})
	join(t, ctx, lab, tailnet.NodeConfig{Hostname: "web", Tags: []string{"tag:nest"}})
	strayDir := t.TempDir()
	strayKey := mint(t, lab, keyCaps{Preauthorized: true, Tags: []string{"tag:nest"}})
	stray := join(t, ctx, lab, tailnet.NodeConfig{Hostname: "old-laptop", Dir: strayDir, AuthKey: strayKey})
	testkit.WaitForContext(t, ctx, "bot to see both peers", func() bool { return len(peerNames(t, ctx, bot)) == 2 })

	d := device(t, lab, "old-laptop")
	if st, out := call(t, lab, lab.APIKey(), "DELETE", "/api/v2/device/"+d["nodeId"].(string), nil); st != 200 {
		t.Fatalf("delete: %d %v", st, out)
	}
	if device(t, lab, "old-laptop") != nil {
		t.Error("the deleted device is still in the devices list")
	}
	testkit.WaitForContext(t, ctx, "old-laptop to leave bot's netmap", func() bool {
		return slices.Equal(peerNames(t, ctx, bot), []string{"web"})
	})
	if st, out := call(t, lab, lab.APIKey(), "DELETE", "/api/v2/device/"+d["id"].(string), nil); st != 404 {
		t.Errorf("delete again: %d %v, want 404", st, out)
	}

	// The deleted device is logged out: started again from its state, with
	// its one-off key, it does not come back.
	stray.Close()
	s, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: "old-laptop", Dir: strayDir, AuthKey: strayKey})
	if err == nil {
		s.Close()
		t.Fatal("the deleted device joined again")
	}
	t.Logf("rejoin: %v", err)
	if slices.Contains(peerNames(t, ctx, bot), "old-laptop") {
		t.Fatal("the deleted device is back in bot's netmap")
	}
}

func TestEphemeralDeviceRemovedWhenOffline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := startLab(t, &tailnet.Lab{Tags: []string{"tag:nest"}, EphemeralTimeout: 200 * time.Millisecond})
	watcher := join(t, ctx, lab, tailnet.NodeConfig{Hostname: "watcher"})
	eph, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: "ci-runner", Dir: t.TempDir(), InMemory: true, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	web, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: "web", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitForContext(t, ctx, "watcher to see both", func() bool { return len(peerNames(t, ctx, watcher)) == 2 })

	// Both go offline; only the ephemeral one is removed.
	eph.Close()
	web.Close()
	testkit.WaitForContext(t, ctx, "ci-runner to leave the devices list", func() bool { return device(t, lab, "ci-runner") == nil })
	testkit.WaitForContext(t, ctx, "ci-runner to leave watcher's netmap", func() bool {
		return slices.Equal(peerNames(t, ctx, watcher), []string{"web"})
	})
	if d := device(t, lab, "web"); d == nil || d["connectedToControl"] != false {
		t.Errorf("web = %v, want it listed, offline", d)
	}
}
