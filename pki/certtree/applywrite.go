package certtree

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"sync"

	"github.com/ducksnest/nestbot/pki"
)

// write checks every file of the apply, then writes them: keys first, then
// certificates, then removals, and secrets.nix last, so that a failure part
// way leaves a tree the next apply repairs. It returns the report of what
// was written, even when a write fails. In a tree that can stage (Stager),
// every key and certificate is staged already (as it was issued), and put
// into place only now: a failure before leaves the tree as it was.
// secrets.nix keeps the rules (kept, as read) of keys no task covers.
func (a *Applier) write(tasks []*task, removals []pki.Removal, kept map[string][]string, staged Staging) (*pki.Report, error) {
	rep := &pki.Report{}
	var keys, certs []fileWrite
	secrets := map[string][]string{}
	for p, rs := range kept {
		secrets[p] = rs // a key nestbot leaves alone keeps its rule
	}
	for _, t := range tasks {
		s := t.spec
		res := pki.Result{ID: s.ID, Action: t.action, Reason: t.reason, NotAfter: t.notAfter}
		for _, w := range t.writes {
			res.Files = append(res.Files, w.path)
			if pki.IsAgeFile(w.path) {
				keys = append(keys, w)
			} else {
				certs = append(certs, w)
			}
		}
		switch {
		case len(t.writes) > 0 || t.action == pki.Unchanged:
			secrets[s.KeyPath] = s.Recipients
		case t.have != nil && t.have.HasKey && len(t.have.Recipients) > 0:
			secrets[s.KeyPath] = t.have.Recipients // as recorded: the file was not touched
		}
		if t.nextKeyPath != "" { // a CA in rotation: its new key, rekeyed with the old
			rs := t.nextRecipients
			if t.action == pki.Rekeyed || len(rs) == 0 {
				rs = s.Recipients
			}
			secrets[t.nextKeyPath] = rs
		}
		rep.Results = append(rep.Results, res)
	}
	var removed []string
	for _, r := range removals {
		files := []string{r.CertPath, r.KeyPath}
		removed = append(removed, files...)
		delete(secrets, r.KeyPath)
		rep.Results = append(rep.Results, pki.Result{ID: r.ID, Action: pki.Deleted, Reason: pki.RemovalReason(r), Files: files})
	}
	sort.Slice(rep.Results, func(i, j int) bool { return rep.Results[i].ID < rep.Results[j].ID })
	rep.Warnings = a.warnings(tasks)

	files, err := a.checkFiles(keys, certs, removed, secrets)
	if err != nil {
		return nil, fmt.Errorf("pki: apply: %w", err)
	}

	for _, r := range rep.Results {
		attrs := []any{"id", r.ID, "action", string(r.Action)}
		if r.Reason != "" {
			attrs = append(attrs, "reason", r.Reason)
		}
		if len(r.Files) > 0 {
			attrs = append(attrs, "files", r.Files)
		}
		if r.Action == pki.Unchanged {
			a.log().Debug("pki: certificate", attrs...)
		} else {
			a.log().Info("pki: certificate", attrs...)
		}
	}
	if err := a.writeFiles(files, staged, rep); err != nil {
		return rep, fmt.Errorf("pki: apply: %w", err)
	}
	a.log().Info("pki: apply done", "summary", rep.Summary(), "written", len(rep.Written), "removed", len(rep.Removed))
	return rep, nil
}

// A fileSet is what an apply or a rotation phase writes, checked.
type fileSet struct {
	keys, certs []fileWrite
	removals    []string
	nix         []byte // secrets.nix as the rules render it
	nixChanged  bool   // whether nix is not what the tree holds
}

// checkFiles renders secrets.nix from rules and checks every file to be
// written (keys, certificates, secrets.nix if it changed): when one may not
// be, the error says which, and nothing is written.
func (a *Applier) checkFiles(keys, certs []fileWrite, removals []string, rules map[string][]string) (*fileSet, error) {
	s := &fileSet{keys: keys, certs: certs, removals: removals, nix: pki.RenderSecretsNix(rules)}
	old, err := fs.ReadFile(a.Files, pki.SecretsNixPath)
	s.nixChanged = err != nil || !bytes.Equal(old, s.nix)
	all := append(append([]fileWrite{}, keys...), certs...)
	if s.nixChanged {
		all = append(all, fileWrite{pki.SecretsNixPath, s.nix})
	}
	var errs []error
	for _, w := range all {
		if err := checkWrite(w.path, w.data); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("nothing written: %w", err)
	}
	return s, nil
}

// writeFiles writes s: keys, then certificates, each group put into place
// (when staged) or written in parallel, every file synced and renamed; then
// removals; secrets.nix last, so that a failure part way leaves a tree the
// next apply repairs. It adds to rep what it wrote and removed, even when a
// write fails, sorted once all is done.
func (a *Applier) writeFiles(s *fileSet, staged Staging, rep *pki.Report) error {
	for _, group := range [][]fileWrite{s.keys, s.certs} {
		done, err := a.writeAll(group, staged)
		rep.Written = append(rep.Written, done...)
		if err != nil {
			return err
		}
	}
	for _, p := range s.removals {
		if err := a.Files.Remove(p); err != nil {
			return err
		}
		rep.Removed = append(rep.Removed, p)
	}
	if s.nixChanged {
		if err := a.Files.WriteFile(pki.SecretsNixPath, s.nix); err != nil {
			return err
		}
		rep.Written = append(rep.Written, pki.SecretsNixPath)
	}
	sort.Strings(rep.Written)
	sort.Strings(rep.Removed)
	return nil
}

// writeAll writes files in parallel, or puts them into place when they
// are staged, and returns those written.
func (a *Applier) writeAll(files []fileWrite, staged Staging) ([]string, error) {
	errs := inParallel(len(files), func(i int) error {
		if staged != nil {
			return staged.Commit(files[i].path)
		}
		return a.Files.WriteFile(files[i].path, files[i].data)
	})
	var done []string
	for i, w := range files {
		if errs[i] == nil {
			done = append(done, w.path)
		}
	}
	return done, errors.Join(errs...)
}

// inParallel calls fn for 0 … n-1, 8 at a time (file system work), and
// returns each call's error.
func inParallel(n int, fn func(i int) error) []error {
	const workers = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errs
}

// warnings are what will make a later apply fail.
func (a *Applier) warnings(tasks []*task) []string {
	var out []string
	for _, t := range tasks {
		if !t.spec.IsCA {
			continue
		}
		switch {
		case a.Identity == nil && t.action == pki.Issued:
			out = append(out, fmt.Sprintf("%s was issued without a bot identity; to sign with it later, the bot needs an identity among its recipients (pki.admins)", t.spec.KeyPath))
		case a.Identity != nil && !slices.ContainsFunc(a.Identity.Recipients(), func(r string) bool {
			return slices.Contains(t.spec.Recipients, pki.NormalizeRecipient(r))
		}):
			out = append(out, fmt.Sprintf("the bot's identity is not among the recipients of %s; add it to pki.admins, or signing with it will fail", t.spec.KeyPath))
		}
	}
	return out
}
