package storetest

import (
	"bufio"
	"bytes"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/fixtures"
)

// StartDynalite starts dynalite (the npm package .ci/fixtures installs),
// in memory, on a free loopback port, for the rest of t, and returns its
// endpoint ("http://127.0.0.1:PORT"). Tables become active at once. It
// skips t where dynalite is not installed (fails it in CI).
func StartDynalite(t testing.TB) string {
	t.Helper()
	pkg := fixtures.Package(t, "dynalite")
	script := `const s = require(process.argv[1])({createTableMs: 0, deleteTableMs: 0, updateTableMs: 0})
  .listen(0, '127.0.0.1', () => console.log('listening ' + s.address().port))`
	return startNode(t, "dynalite", nil, script, pkg)
}

// StartS3rver starts s3rver (the npm package .ci/fixtures installs), keeping
// its objects under a temporary directory, on a free loopback port, for the
// rest of t, and returns its endpoint ("http://127.0.0.1:PORT"). It skips
// t where s3rver is not installed (fails it in CI).
func StartS3rver(t testing.TB) string {
	t.Helper()
	pkg := fixtures.Package(t, "s3rver")
	script := `const S3rver = require(process.argv[1])
new S3rver({address: '127.0.0.1', port: 0, directory: process.argv[2], silent: true}).run()
  .then(({port}) => console.log('listening ' + port), e => { console.error(e); process.exit(1) })`
	// s3rver's continuation tokens (listings past one page) are DES,
	// which OpenSSL 3 keeps in its legacy provider.
	return startNode(t, "s3rver", []string{"--openssl-legacy-provider"}, script, pkg, t.TempDir())
}

// startNode runs script under node (with flags) with args until t ends, and returns the
// endpoint of the port it prints as "listening PORT". The server also
// ends when its standard input closes, so it never outlives the test
// binary.
func startNode(t testing.TB, name string, flags []string, script string, args ...string) string {
	t.Helper()
	node := fixtures.Node(t)
	script += "\nprocess.stdin.on('end', () => process.exit(0)); process.stdin.resume()"
	cmd := exec.Command(node, slices.Concat(flags, []string{"-e", script}, args)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if port, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				ready <- port
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case port := <-ready:
		return "http://127.0.0.1:" + port
	case err := <-exited:
		exited <- err
		t.Fatalf("%s exited before listening (%v):\n%s", name, err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not listen within 30s:\n%s", name, stderr.String())
	}
	panic("unreachable")
}

// syncBuffer is a bytes.Buffer safe to write from the process's copier
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
