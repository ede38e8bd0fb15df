package bot

import (
	"context"

	"github.com/ducksnest/nestbot/gitops/git"
)

// checkout is one job's clone of the repository, with a worktree.
type checkout struct {
	repo *git.Repo
	dir  string
	file string // nest.yaml in it
	head string
}

func checkOut(ctx context.Context, cloneURL, dir, ref, token string) (*checkout, error) {
	r, err := git.Checkout(ctx, cloneURL, dir, ref, git.Options{Token: token})
	if err != nil {
		return nil, err
	}
	head, err := r.Head()
	if err != nil {
		return nil, err
	}
	return &checkout{repo: r, dir: dir, head: head}, nil
}
