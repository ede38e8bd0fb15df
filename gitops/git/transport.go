package git

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// installTransport runs once: go-git's default file:// transport runs
// git-upload-pack and git-receive-pack; localTransport serves the other
// repository in-process with go-git's server code, so nestbot needs no git
// binary.
var installTransport sync.Once

func useTransport() {
	installTransport.Do(func() {
		client.InstallProtocol("file", localTransport{})
	})
}

// localTransport is go-git's in-process server used as a client, with two
// fixes: it opens non-bare repositories at their .git directory, and it
// drops the "have" lines naming objects the served repository does not hold
// (go-git's server fails the whole fetch on one; git ignores them). A fetch
// after local commits that were never pushed sends such haves.
type localTransport struct{}

func (localTransport) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	sto, err := openLocal(ep)
	if err != nil {
		return nil, err
	}
	s, err := server.NewClient(fixedLoader{sto}).NewUploadPackSession(ep, auth)
	if err != nil {
		return nil, closeStorer(sto, err)
	}
	return &uploadPackSession{UploadPackSession: s, sto: sto}, nil
}

// closeStorer closes a session's storage (its open packfiles) with it.
func closeStorer(sto storer.Storer, err error) error {
	if c, ok := sto.(io.Closer); ok {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func (localTransport) NewReceivePackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.ReceivePackSession, error) {
	sto, err := openLocal(ep)
	if err != nil {
		return nil, err
	}
	s, err := server.NewClient(fixedLoader{sto}).NewReceivePackSession(ep, auth)
	if err != nil {
		return nil, closeStorer(sto, err)
	}
	return &receivePackSession{ReceivePackSession: s, sto: sto}, nil
}

type receivePackSession struct {
	transport.ReceivePackSession
	sto storer.Storer
}

func (s *receivePackSession) Close() error { return closeStorer(s.sto, s.ReceivePackSession.Close()) }

type uploadPackSession struct {
	transport.UploadPackSession
	sto storer.Storer
}

func (s *uploadPackSession) UploadPack(ctx context.Context, req *packp.UploadPackRequest) (*packp.UploadPackResponse, error) {
	known := req.Haves[:0:0]
	for _, h := range req.Haves {
		if s.sto.HasEncodedObject(h) == nil {
			known = append(known, h)
		}
	}
	req.Haves = known
	return s.UploadPackSession.UploadPack(ctx, req)
}

func (s *uploadPackSession) Close() error { return closeStorer(s.sto, s.UploadPackSession.Close()) }

type fixedLoader struct{ sto storer.Storer }

func (l fixedLoader) Load(*transport.Endpoint) (storer.Storer, error) { return l.sto, nil }

// openLocal opens the repository at a file:// endpoint's path, bare or not.
func openLocal(ep *transport.Endpoint) (storer.Storer, error) {
	dir := ep.Path
	if st, err := os.Stat(filepath.Join(dir, ".git")); err == nil && st.IsDir() {
		dir = filepath.Join(dir, ".git")
	}
	for _, want := range []string{"objects", "HEAD"} {
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			return nil, transport.ErrRepositoryNotFound
		}
	}
	return filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRUDefault()), nil
}
