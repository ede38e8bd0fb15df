package fleet

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"reflect"
	"slices"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki/certtree"
)

// LoadTree reads nest.yaml at file (slash-separated) and the host keys
// pinned beside it from a commit's tree (git.Repo.Tree), as Load reads a
// checkout: the default branch's, whose values a pull request is planned
// with. A symbolic link in the tree is not followed (the tree holds its
// target as text): nest.yaml being one is an error. The Desired has no
// Root: it is for its values, not for reading or writing files.
func LoadTree(fsys fs.FS, file string) (*Desired, error) {
	if fi, err := fs.Stat(fsys, file); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link; nestbot follows no link in the repository: replace it with the file itself", file)
	}
	f, err := fsys.Open(file)
	if err != nil {
		return nil, err
	}
	src, err := io.ReadAll(io.LimitReader(f, nest.MaxFileSize+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(src) > nest.MaxFileSize {
		return nil, nest.Errors{{File: file, Msg: fmt.Sprintf("file is larger than %d bytes", nest.MaxFileSize)}}
	}
	fl, err := nest.Parse(file, src)
	if err != nil {
		return nil, err
	}
	d := &Desired{File: file, Fleet: fl, Source: src}
	if fl.PKI != nil {
		dir := path.Join(path.Dir(file), fl.PKI.Dir)
		sub, err := fs.Sub(fsys, dir)
		if err != nil {
			return nil, err
		}
		if d.HostKeys, err = certtree.ReadHostKeysFS(noLinksFS{sub}, dir, d.HostNames()); err != nil {
			return nil, err
		}
		if d.Nodes, err = certtree.ReadNodeIDsFS(noLinksFS{sub}, dir, d.HostNames()); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// noLinksFS refuses to open a symbolic link (in a commit's tree, a link is a
// file holding its target; it is not what it names).
type noLinksFS struct{ fs.FS }

func (n noLinksFS) Open(name string) (fs.File, error) {
	if fi, err := fs.Stat(n.FS, name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("a symbolic link; nestbot follows no link in the repository")}
	}
	return n.FS.Open(name)
}

// Trust takes from trusted — nest.yaml on the default branch — everything
// that decides where credentials go or which are used, and the apply
// policy, and returns what d (a pull request's) had differently: a pull
// request is planned with the default branch's values, and what it
// changes of them takes effect only once it is merged. trusted nil (the
// default branch has no nest.yaml yet) trusts nothing: no credentials at
// all, and every such value the pull request sets is a change.
//
// The trusted values: tailnet.control_url, tailnet.auth_key,
// tailnet.oauth, tailnet.tags (the keys minted and the devices that are
// the fleet's), pki.admins and the pinned host keys (who can decrypt),
// pki.serving_ports (what the plan connects to on the fleet's nodes), and
// github (the apply policy). Operator flags (--ts-control-url,
// --ts-authkey) still win over both.
func (d *Desired) Trust(trusted *Desired) (changed []string) {
	if trusted == nil {
		trusted = &Desired{Fleet: &nest.Fleet{}}
	}
	t, f := trusted.Fleet, d.Fleet
	take := func(name string, differ bool, set func()) {
		if differ {
			changed = append(changed, name)
		}
		set()
	}
	take("tailnet.control_url", f.Tailnet.ControlURL != t.Tailnet.ControlURL, func() { f.Tailnet.ControlURL = t.Tailnet.ControlURL })
	take("tailnet.auth_key", !reflect.DeepEqual(f.Tailnet.AuthKey, t.Tailnet.AuthKey), func() { f.Tailnet.AuthKey = t.Tailnet.AuthKey })
	take("tailnet.oauth", !reflect.DeepEqual(f.Tailnet.OAuth, t.Tailnet.OAuth), func() { f.Tailnet.OAuth = t.Tailnet.OAuth })
	take("tailnet.tags", !slices.Equal(f.Tailnet.Tags, t.Tailnet.Tags), func() { f.Tailnet.Tags = slices.Clone(t.Tailnet.Tags) })
	take("github", !reflect.DeepEqual(f.GitHub, t.GitHub), func() { f.GitHub = t.GitHub })
	if f.PKI != nil {
		if t.PKI != nil {
			take("pki.admins", !slices.Equal(f.PKI.Admins, t.PKI.Admins), func() { f.PKI.Admins = slices.Clone(t.PKI.Admins) })
		} else {
			changed = append(changed, "pki.admins") // planned as given: the plan encrypts nothing
		}
		// The ports the plan probes on the fleet's nodes are the default
		// branch's: a pull request does not choose what nestbot connects to.
		ports := nest.DefaultServingPorts()
		if t.PKI != nil && len(t.PKI.ServingPorts) > 0 {
			ports = t.PKI.ServingPorts
		}
		take("pki.serving_ports", !slices.Equal(f.PKI.ServingPorts, ports), func() { f.PKI.ServingPorts = slices.Clone(ports) })
		var keys []string
		for _, h := range slices.Sorted(maps.Keys(d.HostKeys)) {
			if trusted.HostKeys[h] != d.HostKeys[h] {
				keys = append(keys, h)
			}
		}
		for _, h := range slices.Sorted(maps.Keys(trusted.HostKeys)) {
			if _, ok := d.HostKeys[h]; !ok && f.Hosts[h] != nil {
				keys = append(keys, h)
			}
		}
		if len(keys) > 0 {
			changed = append(changed, "the pinned host keys of "+joinNames(keys))
		}
		for _, h := range slices.Sorted(maps.Keys(d.Nodes)) {
			if trusted.Nodes[h] != d.Nodes[h] {
				changed = append(changed, "the pinned tailnet node of "+h)
			}
		}
		d.HostKeys, d.Nodes = ofHosts(trusted.HostKeys, f), ofHosts(trusted.Nodes, f)
	}
	// The host keys a login checks, and nestbot's own key for OpenSSH
	// logins: the default branch's, as the age recipients are.
	var pins []string
	for _, h := range slices.Sorted(maps.Keys(f.Hosts)) {
		if trusted.Pins[h] != d.Pins[h] && f.Hosts[h].HostKey != "" { // else the age recipient, named above
			pins = append(pins, h)
		}
	}
	if len(pins) > 0 {
		changed = append(changed, "the pinned SSH host keys of "+joinNames(pins))
	}
	d.Pins = ofHosts(trusted.Pins, f)
	take("rollout.ssh.key", !reflect.DeepEqual(f.Rollout.SSH.Key, t.Rollout.SSH.Key), func() { f.Rollout.SSH.Key = t.Rollout.SSH.Key })
	return changed
}

// ofHosts is what of m is for a host of f.
func ofHosts(m map[string]string, f *nest.Fleet) map[string]string {
	out := map[string]string{}
	for h, v := range m {
		if f.Hosts[h] != nil {
			out[h] = v
		}
	}
	return out
}

func joinNames(names []string) string {
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	switch len(names) {
	case 1:
		return names[0]
	case 2:
		return names[0] + " and " + names[1]
	}
	s := ""
	for i, n := range names {
		switch {
		case i == len(names)-1:
			s += ", and " + n
		case i > 0:
			s += ", " + n
		default:
			s = n
		}
	}
	return s
}
