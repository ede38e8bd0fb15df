package git

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
)

// Push sends branch to the same branch on the remote, as a fast-forward
// only. A remote already at the branch's commit is success. When the remote
// branch moved — someone else pushed — the error is a *PushRejectedError
// with NonFastForward set, which matches ErrBranchMoved: fetch and re-plan.
func (r *Repo) Push(ctx context.Context, branch string) error {
	branch = strings.TrimPrefix(branch, "refs/heads/")
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.push(ctx, branch)
	if err == nil {
		return nil
	}
	var rejected *PushRejectedError
	if errors.As(err, &rejected) {
		return err
	}
	return r.redact.error(fmt.Errorf("git: push %s to %s: %w", branch, r.remote, err))
}

func (r *Repo) push(ctx context.Context, branch string) error {
	ref := plumbing.NewBranchReferenceName(branch)
	if err := ref.Validate(); err != nil || branch == "" {
		return fmt.Errorf("invalid branch name %q", branch)
	}
	local, err := r.repo.Storer.Reference(ref)
	if err != nil {
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			return fmt.Errorf("no local branch %s to push", branch)
		}
		return err
	}
	u, err := r.remoteURL()
	if err != nil {
		return err
	}
	auth, err := r.authFor(u)
	if err != nil {
		return err
	}
	useTransport()
	start := time.Now()
	err = r.repo.PushContext(ctx, &gogit.PushOptions{
		RemoteName: r.remote,
		RefSpecs:   []config.RefSpec{config.RefSpec(ref + ":" + ref)},
		Auth:       auth,
	})
	if errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		err = nil
	}
	if err != nil {
		if rejected := r.rejection(branch, err); rejected != nil {
			r.log.Warn("git: push rejected", "remote", r.remote, "branch", branch,
				"moved", rejected.NonFastForward, "reason", rejected.Reason)
			return rejected
		}
		return err
	}
	r.log.Info("git: pushed", "remote", r.remote, "url", r.redact.string(u), "branch", branch,
		"commit", local.Hash().String(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// rejection recognises a refused ref update: go-git's own fast-forward check
// before sending, or an "ng" status from the remote's receive-pack.
func (r *Repo) rejection(branch string, err error) *PushRejectedError {
	msg := err.Error()
	remoteNG := strings.HasPrefix(msg, "command error on ")
	if !remoteNG && !strings.Contains(msg, "non-fast-forward") {
		return nil
	}
	moved := false
	for _, sign := range []string{
		"non-fast-forward", "fetch first", "stale info", "cannot lock ref",
		"failed to lock", "failed to update ref", "reference already exists",
	} {
		if strings.Contains(msg, sign) {
			moved = true
		}
	}
	return &PushRejectedError{Remote: r.remote, Branch: branch, NonFastForward: moved, Reason: r.redact.string(msg)}
}
