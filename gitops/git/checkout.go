package git

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
)

// Checkout clones rawURL into dir (absent or empty) with a worktree — for
// the bot, which needs nest.yaml and the certificate tree as files — and
// checks out ref: a branch ("main", "refs/heads/main") or any other ref
// the remote has ("refs/pull/12/head"). A branch is checked out as itself,
// so certificates can be committed on it and pushed; another ref as the
// local branch "nest/checkout". The whole history is fetched: rollouts
// compare any revision a host runs with the target.
func Checkout(ctx context.Context, rawURL, dir, ref string, opts Options) (*Repo, error) {
	cleanURL, user, pass, err := splitCredentials(rawURL)
	if err != nil {
		return nil, fmt.Errorf("git: checkout: %w", err)
	}
	if opts.Token == "" && pass != "" {
		opts.Token, opts.Username = pass, cmp.Or(opts.Username, user)
	}
	src := plumbing.ReferenceName(ref)
	if !strings.HasPrefix(ref, "refs/") {
		src = plumbing.NewBranchReferenceName(ref)
	}
	local := src
	if !src.IsBranch() {
		local = plumbing.NewBranchReferenceName("nest/checkout")
	}
	op := fmt.Sprintf("git: check out %s of %s into %s", src, cleanURL, dir)
	cleanup, err := prepareDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	r, err := gogit.PlainInit(dir, false)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	rp := newRepo(r, opts)
	rp.redact.addBasic(user, pass)
	fail := func(err error) (*Repo, error) {
		cleanup()
		return nil, rp.redact.error(fmt.Errorf("%s: %w", op, err))
	}
	if _, err := r.CreateRemote(&config.RemoteConfig{Name: rp.remote, URLs: []string{cleanURL},
		Fetch: []config.RefSpec{"+refs/heads/*:refs/remotes/" + config.RefSpec(rp.remote) + "/*"}}); err != nil {
		return fail(err)
	}
	auth, err := rp.authFor(cleanURL)
	if err != nil {
		return fail(err)
	}
	useTransport()
	err = r.FetchContext(ctx, &gogit.FetchOptions{RemoteName: rp.remote, Auth: auth, Tags: gogit.NoTags,
		RefSpecs: []config.RefSpec{config.RefSpec("+" + src.String() + ":" + local.String())}})
	if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return fail(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		return fail(err)
	}
	if err := wt.Checkout(&gogit.CheckoutOptions{Branch: local, Force: true}); err != nil {
		return fail(err)
	}
	if local == src {
		// Track the remote branch, so Push sends it back where it came from.
		_ = r.CreateBranch(&config.Branch{Name: local.Short(), Remote: rp.remote, Merge: src})
	}
	rp.log.Info("git: checked out", "url", rp.redact.string(cleanURL), "ref", src.String(), "dir", dir)
	return rp, nil
}
