package git

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// ErrNothingToCommit is returned by Commit when the requested changes leave
// the tree exactly as it is at the parent: nestbot never makes empty commits.
var ErrNothingToCommit = errors.New("git: nothing to commit: the tree is unchanged")

// ErrUnknownRevision is matched (errors.Is) by every error about a revision
// the repository does not hold: a typo, a commit never pushed, or one not
// fetched yet.
var ErrUnknownRevision = errors.New("revision not found in the repository")

// ErrBranchMoved is matched (errors.Is) by both ways of learning that
// someone else moved a branch: a *BranchMovedError from Commit and a
// *PushRejectedError for a non-fast-forward push. Either way the plan that
// led to the commit is stale: fetch, re-plan, commit again.
var ErrBranchMoved = errors.New("the branch moved")

// BranchMovedError is returned by Commit when the branch is not at the
// parent the caller expected (CommitRequest.Parent).
type BranchMovedError struct {
	Branch   string
	Expected string // the parent the caller gave
	Actual   string // where the branch is now
}

func (e *BranchMovedError) Error() string {
	return fmt.Sprintf("git: commit to %s refused: the branch is at %s, not at the expected parent %s; "+
		"someone else committed, so re-plan from %s", e.Branch, short(e.Actual), short(e.Expected), short(e.Actual))
}

// Is makes errors.Is(err, ErrBranchMoved) true.
func (e *BranchMovedError) Is(target error) bool { return target == ErrBranchMoved }

// PushRejectedError is returned by Push when the remote did not take the
// update. NonFastForward is true when the remote branch moved (someone else
// pushed); the error then also matches ErrBranchMoved.
type PushRejectedError struct {
	Remote         string
	Branch         string
	NonFastForward bool
	Reason         string // what go-git or the remote said, with secrets removed
}

func (e *PushRejectedError) Error() string {
	if e.NonFastForward {
		return fmt.Sprintf("git: push %s to %s rejected: the remote branch moved since this commit was made "+
			"(someone else pushed); fetch and re-plan (%s)", e.Branch, e.Remote, e.Reason)
	}
	return fmt.Sprintf("git: push %s to %s rejected by the remote: %s", e.Branch, e.Remote, e.Reason)
}

// Is makes errors.Is(err, ErrBranchMoved) true for a non-fast-forward push.
func (e *PushRejectedError) Is(target error) bool {
	return target == ErrBranchMoved && e.NonFastForward
}

// PlaintextKeyError is returned by Commit when a file to be written holds a
// plaintext private key, or is named .age without being age-encrypted. It
// names the files, never their content. Nothing was written.
type PlaintextKeyError struct {
	Paths []string
}

func (e *PlaintextKeyError) Error() string {
	return fmt.Sprintf("git: commit refused: %s would commit a plaintext private key "+
		"(or an .age file that is not age-encrypted); private keys belong only in age-encrypted .age files",
		strings.Join(e.Paths, ", "))
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	if sha == "" {
		return "(none)"
	}
	return sha
}

// redactor removes credentials from text that may have come from go-git or a
// remote: the token in every form it may take on the wire, and the userinfo
// of any URL.
type redactor struct {
	secrets []string
}

// userinfo matches the user[:password]@ part of a URL.
var userinfo = regexp.MustCompile(`://[^/@\s"'<>]*@`)

const redacted = "[REDACTED]"

func newRedactor(secrets ...string) *redactor {
	r := &redactor{}
	r.add(secrets...)
	return r
}

func (r *redactor) add(secrets ...string) {
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s), url.UserPassword("x", s).String()[2:]} {
			if form != "" && !slices.Contains(r.secrets, form) {
				r.secrets = append(r.secrets, form)
			}
		}
	}
}

// addBasic also hides the Authorization header value for user:secret.
func (r *redactor) addBasic(user, secret string) {
	if secret == "" {
		return
	}
	r.add(secret, base64.StdEncoding.EncodeToString([]byte(user+":"+secret)))
}

func (r *redactor) string(s string) string {
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, redacted)
	}
	return userinfo.ReplaceAllString(s, "://"+redacted+"@")
}

// error returns err with its message redacted. errors.Is still sees through
// it (to context.Canceled, fs.ErrNotExist, go-git's sentinels, ours), but
// nothing can unwrap it to reach the original text.
func (r *redactor) error(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: r.string(err.Error()), orig: err}
}

type redactedError struct {
	msg  string
	orig error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Is(target error) bool { return errors.Is(e.orig, target) }
