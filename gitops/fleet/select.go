package fleet

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
)

// SelectHosts resolves host selectors as colmena's --on does: a host's
// name, a glob over names (web-*), @<role> (the hosts with that role), or
// @tag:<name> (the hosts whose tailnet node carries that ACL tag, as
// observed). The result is sorted; a selector that matches no host is an
// error saying what would.
func SelectHosts(d *Desired, live *reconcile.Live, selectors []string) ([]string, error) {
	tags := map[string][]string{} // host → its node's tags
	if live != nil {
		byNode := d.HostsByNode()
		for _, n := range live.Tailnet.Nodes {
			if h, ok := byNode[n.Name]; ok {
				tags[h] = n.Tags
			}
		}
	}
	picked := map[string]bool{}
	for _, sel := range selectors {
		sel = strings.TrimSpace(sel)
		var match func(name string, h *nest.Host) bool
		switch {
		case sel == "":
			return nil, fmt.Errorf("--hosts: an empty selector")
		case strings.HasPrefix(sel, "@tag:"):
			tag := strings.TrimPrefix(sel, "@")
			match = func(name string, _ *nest.Host) bool { return slices.Contains(tags[name], tag) }
		case strings.HasPrefix(sel, "@"):
			role := strings.TrimPrefix(sel, "@")
			if !slices.Contains(nest.KnownRoles(), role) {
				return nil, fmt.Errorf("--hosts %s: no role %q; use @%s, or @tag:<name> for a tailnet tag", sel, role, strings.Join(nest.KnownRoles(), ", @"))
			}
			match = func(_ string, h *nest.Host) bool { return h.HasRole(role) }
		default:
			if _, err := path.Match(sel, ""); err != nil {
				return nil, fmt.Errorf("--hosts %s: not a glob: %w", sel, err)
			}
			match = func(name string, _ *nest.Host) bool { ok, _ := path.Match(sel, name); return ok }
		}
		n := 0
		for _, name := range d.HostNames() {
			if match(name, d.Fleet.Hosts[name]) {
				picked[name] = true
				n++
			}
		}
		if n == 0 {
			switch {
			case strings.HasPrefix(sel, "@tag:"):
				return nil, fmt.Errorf("--hosts %s: no host's tailnet node carries %s (is it on the tailnet?)", sel, strings.TrimPrefix(sel, "@"))
			case strings.HasPrefix(sel, "@"):
				return nil, fmt.Errorf("--hosts %s: no host in %s has that role", sel, d.File)
			}
			return nil, fmt.Errorf("--hosts %s: no such host in %s (hosts: %s)", sel, d.File, strings.Join(d.HostNames(), ", "))
		}
	}
	out := make([]string, 0, len(picked))
	for _, name := range d.HostNames() {
		if picked[name] {
			out = append(out, name)
		}
	}
	return out, nil
}
