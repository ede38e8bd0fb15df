package bot

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/ducksnest/nestbot/gitops/git"
)

// checkout is one job's clone of the repository, with a worktree.
type checkout struct {
	repo *git.Repo
	dir  string
	file string // nest.yaml in it
	head string
}

// relative is err with the checkout's directory taken out of its text:
// what a pull request's comment says names files as the repository does,
// and nothing of the bot's own file system.
func (co *checkout) relative(err error) error {
	if err == nil || co == nil || co.dir == "" {
		return err
	}
	msg := strings.ReplaceAll(err.Error(), co.dir+string(filepath.Separator), "")
	if msg == err.Error() {
		return err
	}
	return &relativeError{msg: msg, err: err}
}

type relativeError struct {
	msg string
	err error
}

func (e *relativeError) Error() string { return e.msg }
func (e *relativeError) Unwrap() error { return e.err }

func checkOut(ctx context.Context, cloneURL, dir, ref, token string, log *slog.Logger) (*checkout, error) {
	r, err := git.Checkout(ctx, cloneURL, dir, ref, git.Options{Token: token, Logger: log})
	if err != nil {
		return nil, err
	}
	head, err := r.Head()
	if err != nil {
		return nil, err
	}
	return &checkout{repo: r, dir: dir, head: head}, nil
}
