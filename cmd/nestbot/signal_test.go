package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/gitops/webhook"
)

// These tests run nestbot serve as its own process (the test binary as
// main, as lab_test.go does) and stop it with real signals. A delivery's
// job is held in flight by a git remote that does not answer until the
// test lets it, so what serve does while work is running is seen, never
// guessed at by sleeping.

const serveSecret = "serve-test-webhook-secret-c4n4ry"

// servedProcess is nestbot running (serve, mostly), its standard error
// read line by line.
type servedProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	lines  []string
	more   chan struct{} // closed and replaced when a line arrives
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startServe starts nestbot serve on a loopback port with a token, a
// webhook secret and a state directory of its own; args are added.
func startServe(ctx context.Context, t *testing.T, github string, args ...string) *servedProcess {
	t.Helper()
	addr := freeLoopbackAddr(t)
	env := []string{"NESTBOT_STATE_DIR=" + t.TempDir(), "NESTBOT_WEBHOOK_SECRET=" + serveSecret, "GITHUB_TOKEN=serve-test-token-c4n4ry"}
	p := startNestbot(ctx, t, env, append([]string{"serve", "--listen", addr, "--github-api-url", github, "--github-login", "nestbot-test"}, args...)...)
	p.addr = addr
	return p
}

// startNestbot starts nestbot with args in env, reading its standard
// error; it is killed when the test ends.
func startNestbot(ctx context.Context, t *testing.T, env []string, args ...string) *servedProcess {
	t.Helper()
	cmd := nestbotCmd(ctx, env, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &servedProcess{t: t, cmd: cmd, more: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("nestbot %s: standard error:\n%s", args[0], p.stderr())
		}
	})
	return p
}

// freeLoopbackAddr is a loopback address with a port free now, for a
// process started next to listen on.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (p *servedProcess) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLine waits, bounded by ctx, for a line of standard error that match
// accepts, and returns it.
func (p *servedProcess) waitLine(ctx context.Context, what string, match func(string) bool) string {
	p.t.Helper()
	seen := 0
	for {
		p.mu.Lock()
		lines, more := p.lines, p.more
		p.mu.Unlock()
		for _, l := range lines[seen:] {
			if match(l) {
				return l
			}
		}
		seen = len(lines)
		select {
		case <-more:
		case <-p.exited:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if n == seen {
				p.t.Fatalf("nestbot serve exited (%v) before %s", p.err, what)
			}
		case <-ctx.Done():
			p.t.Fatalf("no %s on nestbot serve's standard error", what)
		}
	}
}

// waitExit waits, bounded by ctx, for the process to end and returns its
// exit code.
func (p *servedProcess) waitExit(ctx context.Context) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.t.Fatal("nestbot serve did not exit")
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

func (p *servedProcess) signal(s os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// record parses a line as one JSON log record (nil if it is not one).
func record(line string) map[string]any {
	var rec map[string]any
	if json.Unmarshal([]byte(line), &rec) != nil {
		return nil
	}
	return rec
}

// msgHas matches a JSON record whose message contains s.
func msgHas(s string) func(string) bool {
	return func(line string) bool {
		rec := record(line)
		msg, _ := rec["msg"].(string)
		return rec != nil && strings.Contains(msg, s)
	}
}

// heldRemote is a git remote (and GitHub API) that holds every request
// until released: a job that clones from it stays in flight.
type heldRemote struct {
	*httptest.Server
	arrived chan struct{} // closed when the first request held arrives
	release func()
}

// newHeldRemote holds git's first request of a clone (info/refs) and
// answers 404 to anything else.
func newHeldRemote(t *testing.T) *heldRemote {
	return newHeldServer(t, func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/info/refs") })
}

// newHeldServer holds every request hold accepts, and answers 404 to the
// others.
func newHeldServer(t *testing.T, hold func(*http.Request) bool) *heldRemote {
	h := &heldRemote{arrived: make(chan struct{})}
	released := make(chan struct{})
	var arrive, rel sync.Once
	h.release = func() { rel.Do(func() { close(released) }) }
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hold(r) {
			http.NotFound(w, r)
			return
		}
		arrive.Do(func() { close(h.arrived) })
		select {
		case <-released:
		case <-r.Context().Done():
		}
		http.Error(w, "the test's remote refuses", http.StatusInternalServerError)
	}))
	t.Cleanup(h.Close)
	t.Cleanup(h.release) // before Close, which waits for held requests
	return h
}

// deliverPR sends serve a signed pull_request delivery (opened, #7 of
// ducksnest/infra, cloned from remote) and returns its delivery id.
func deliverPR(ctx context.Context, t *testing.T, addr, remote string) string {
	t.Helper()
	id := fmt.Sprintf("72d3162e-cc78-11e3-81ab-%d", time.Now().UnixNano())
	body := fmt.Appendf(nil, `{"action":"opened","number":7,"pull_request":{"number":7,"draft":false,"head":{"sha":"%s"}},
"repository":{"name":"infra","full_name":"ducksnest/infra","owner":{"login":"ducksnest"},"clone_url":"%s/ducksnest/infra.git","default_branch":"main"}}`,
		strings.Repeat("a", 40), remote)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/webhook", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderEvent, "pull_request")
	req.Header.Set(webhook.HeaderDelivery, id)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign([]byte(serveSecret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delivery answered %d, want 202", resp.StatusCode)
	}
	return id
}

func serveTest(t *testing.T) (context.Context, *heldRemote) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs nestbot serve")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, newHeldRemote(t)
}

// TestServeLogsADeliveryAsJSONLines: on a standard error that is not a
// terminal, serve writes JSON lines, one record each, and a delivery's
// records carry its delivery id, repository and pull request as
// attributes; the webhook secret and the token appear in none.
func TestServeLogsADeliveryAsJSONLines(t *testing.T) {
	ctx, remote := serveTest(t)
	p := startServe(ctx, t, remote.URL)
	p.waitLine(ctx, "serving record", msgHas("nestbot serving"))
	id := deliverPR(ctx, t, p.addr, remote.URL)
	planning := record(p.waitLine(ctx, "planning record", msgHas("planning the pull request")))
	for k, want := range map[string]any{"delivery": id, "event": "pull_request", "repository": "ducksnest/infra", "pr": 7.0, "level": "INFO"} {
		if planning[k] != want {
			t.Errorf("the planning record's %s is %v, want %v: %v", k, planning[k], want, planning)
		}
	}
	<-remote.arrived
	remote.release()
	failed := record(p.waitLine(ctx, "failed job record", msgHas("webhook: job failed")))
	if failed["delivery"] != id || failed["key"] == nil || failed["err"] == nil {
		t.Errorf("the failed job's record lacks its delivery id, key or error: %v", failed)
	}
	p.signal(os.Interrupt)
	p.waitExit(ctx)
	lines := strings.Split(p.stderr(), "\n")
	for i, l := range lines {
		rec := record(l)
		if rec == nil || rec["time"] == nil || rec["level"] == nil || rec["msg"] == nil {
			t.Errorf("line %d is not a JSON record with time, level and msg: %q", i+1, l)
		}
		for _, s := range []string{serveSecret, "serve-test-token-c4n4ry"} {
			if strings.Contains(l, s) {
				t.Errorf("line %d holds a secret: %q", i+1, l)
			}
		}
	}
	if len(lines) < 5 {
		t.Errorf("%d lines, want serving, planning, failed, winding down and stopped at least", len(lines))
	}
}

// TestInterruptWindsDownThenExits130: the first SIGINT stops serve taking
// deliveries, but the job in flight runs to its end before serve stops;
// then it exits 130 (128 + SIGINT).
func TestInterruptWindsDownThenExits130(t *testing.T) {
	ctx, remote := serveTest(t)
	p := startServe(ctx, t, remote.URL)
	p.waitLine(ctx, "serving record", msgHas("nestbot serving"))
	id := deliverPR(ctx, t, p.addr, remote.URL)
	<-remote.arrived // the job is in flight, held by the remote
	p.signal(os.Interrupt)
	p.waitLine(ctx, "winding-down record", msgHas("nestbot: interrupt: winding down; Ctrl-C again to stop at once"))
	p.waitLine(ctx, "stopping record", msgHas("webhook: stopping"))
	select {
	case <-p.exited:
		t.Fatal("serve exited with a job in flight, before its shutdown timeout")
	default:
	}
	remote.release()
	if code := p.waitExit(ctx); code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	out := p.stderr()
	order := []string{"winding down", `"msg":"webhook: job failed"`, `"msg":"webhook: stopped"`, "nestbot: stopped by interrupt"}
	at := 0
	for _, s := range order {
		i := strings.Index(out[at:], s)
		if i < 0 {
			t.Fatalf("no %q after the previous step (order %q); delivery %s", s, order, id)
		}
		at += i
	}
}

// TestSecondInterruptExitsAtOnce: a second SIGINT while serve winds down
// exits at once, 130, without waiting for the job in flight (which the
// remote holds for good) or the 30 s shutdown timeout.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	ctx, remote := serveTest(t)
	p := startServe(ctx, t, remote.URL)
	p.waitLine(ctx, "serving record", msgHas("nestbot serving"))
	deliverPR(ctx, t, p.addr, remote.URL)
	<-remote.arrived
	p.signal(os.Interrupt)
	p.waitLine(ctx, "winding-down record", msgHas("winding down"))
	p.signal(os.Interrupt)
	wctx, cancel := context.WithTimeout(ctx, webhook.DefaultShutdownTimeout/2)
	defer cancel()
	if code := p.waitExit(wctx); code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	out := p.stderr()
	if !strings.Contains(out, "nestbot: interrupt again: stopping at once") {
		t.Errorf("no word of stopping at once:\n%s", out)
	}
	if strings.Contains(out, `"msg":"webhook: stopped"`) {
		t.Errorf("serve wound down in full; the second interrupt did not cut it short:\n%s", out)
	}
}

// TestTerminateExits143: SIGTERM (a service manager's stop) winds down
// as SIGINT does and exits 143 (128 + SIGTERM).
func TestTerminateExits143(t *testing.T) {
	ctx, remote := serveTest(t)
	p := startServe(ctx, t, remote.URL)
	p.waitLine(ctx, "serving record", msgHas("nestbot serving"))
	p.signal(syscall.SIGTERM)
	if code := p.waitExit(ctx); code != 143 {
		t.Errorf("exit %d, want 143", code)
	}
	if !strings.Contains(p.stderr(), `"msg":"webhook: stopped"`) {
		t.Errorf("serve did not wind down:\n%s", p.stderr())
	}
}

// TestLogFormatFlag: --log-format text writes slog's text even to a pipe,
// json writes JSON, NESTBOT_LOG_FORMAT sets it too, and a value it does not
// know is refused before anything runs.
func TestLogFormatFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--log-format", "yaml", "validate", "-f", example + "nest.yaml"}, nil},
		{[]string{"validate", "-f", example + "nest.yaml"}, map[string]string{"NESTBOT_LOG_FORMAT": "yaml"}},
		{[]string{"serve", "--log-format=TEXT"}, nil},
	} {
		code, out, errOut := runCLI(t, tc.env, tc.args...)
		if code != 1 || out != "" || !strings.Contains(errOut, `--log-format "`) || !strings.Contains(errOut, "use auto (json unless standard error is a terminal), text or json") {
			t.Errorf("nestbot %s (env %v): exit %d, stdout %q, stderr %q; want 1 and the values --log-format takes", strings.Join(tc.args, " "), tc.env, code, out, errOut)
		}
	}
	for _, bad := range []string{"verbose", "warning"} {
		code, out, errOut := runCLI(t, nil, "--log-level", bad, "validate", "-f", example+"nest.yaml")
		if code != 1 || out != "" || !strings.Contains(errOut, `--log-level "`+bad+`": use debug, info, warn, error`) {
			t.Errorf("nestbot --log-level %s: exit %d, stdout %q, stderr %q; want 1 and the values --log-level takes", bad, code, out, errOut)
		}
	}
	if code, _, errOut := runCLI(t, nil, "--log-format", "json", "validate", "-f", example+"nest.yaml"); code != 0 {
		t.Errorf("--log-format json: exit %d: %s", code, errOut)
	}

	ctx, remote := serveTest(t)
	t.Run("warn", func(t *testing.T) {
		// --log-level warn: the interrupt's WARN record, not the INFO
		// one of serving. Up is when /healthz answers.
		p := startServe(ctx, t, remote.URL, "--log-format", "json", "--log-level", "warn")
		for tick := time.NewTicker(20 * time.Millisecond); ; <-tick.C {
			if resp, err := http.Get("http://" + p.addr + "/healthz"); err == nil {
				resp.Body.Close()
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("serve never answered /healthz: %s", p.stderr())
			}
		}
		p.signal(os.Interrupt)
		p.waitLine(ctx, "the interrupt's record", func(l string) bool { return strings.Contains(l, "interrupt") })
		p.waitExit(ctx)
		for _, line := range strings.Split(p.stderr(), "\n") {
			if rec := record(line); rec != nil && rec["level"] != "WARN" && rec["level"] != "ERROR" {
				t.Errorf("--log-level warn logged %q", line)
			}
		}
	})
	t.Run("text", func(t *testing.T) {
		p := startServe(ctx, t, remote.URL, "--log-format", "text")
		line := p.waitLine(ctx, "serving line", func(l string) bool { return strings.Contains(l, "nestbot serving") })
		if record(line) != nil || !strings.HasPrefix(line, "time=") || !strings.Contains(line, `level=INFO msg="nestbot serving; webhook at /webhook"`) {
			t.Errorf("--log-format text wrote %q, want slog's text", line)
		}
		p.signal(os.Interrupt)
		p.waitExit(ctx)
	})
	t.Run("json", func(t *testing.T) {
		p := startServe(ctx, t, remote.URL, "--log-format", "json")
		line := p.waitLine(ctx, "serving line", func(l string) bool { return strings.Contains(l, "nestbot serving") })
		if rec := record(line); rec == nil || rec["addr"] != p.addr {
			t.Errorf("--log-format json wrote %q, want a JSON record with the address", line)
		}
		p.signal(os.Interrupt)
		p.waitExit(ctx)
	})
}

// TestInterruptReachesPlan: the root context is the one plan observes
// with. An EC2 endpoint that holds its requests keeps nestbot plan
// waiting; SIGINT cancels the wait, and plan exits 130 at once (on
// context.Background() it waited out the SDK's retries).
func TestInterruptReachesPlan(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nestbot plan")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ec2 := newHeldServer(t, func(*http.Request) bool { return true })
	env := []string{"AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=held-ec2-secret-c4n4ry", "AWS_REGION=ap-northeast-2",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_ENDPOINT_URL=" + ec2.URL, "NESTBOT_STATE_DIR=" + t.TempDir()}
	p := startNestbot(ctx, t, env, "plan", "-f", copyExample(t)+"/nest.yaml")
	select {
	case <-ec2.arrived:
	case <-p.exited:
		t.Fatalf("plan exited (%v) before it asked EC2", p.err)
	case <-ctx.Done():
		t.Fatal("plan never asked EC2")
	}
	p.signal(os.Interrupt)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if code := p.waitExit(wctx); code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	out := p.stderr()
	if !strings.Contains(out, "nestbot: interrupt: winding down") || !strings.Contains(out, "nestbot: stopped by interrupt") || strings.Contains(out, "held-ec2-secret-c4n4ry") {
		t.Errorf("standard error:\n%s", out)
	}
}
