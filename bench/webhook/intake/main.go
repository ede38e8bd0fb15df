// Command intake is bench/webhook/run's nestbot side: the webhook server of
// package gitops/webhook on a bbolt state file, with workers that do
// nothing, so the benchmark measures intake — signature, classification and
// a durable (fsynced) job per 202.
//
//	intake example OUT          write GitHub's example push to the default branch to OUT
//	intake sign SECRET-FILE F   print the X-Hub-Signature-256 of file F
//	intake serve -listen ADDR -db FILE -secret-file FILE
//	intake freeport             print a free TCP port on 127.0.0.1
//
// hey sends the same headers with every request; serve gives each request
// a delivery id of its own (the header's value and a counter), so every
// request is a new job, not a duplicate.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/store"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: intake example OUT | sign SECRET-FILE FILE | serve -listen ADDR -db FILE -secret-file FILE | freeport")
	}
	var err error
	switch os.Args[1] {
	case "example":
		err = example(os.Args[2:])
	case "sign":
		err = sign(os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	case "freeport":
		err = freeport()
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatal("intake: ", err)
	}
}

// example writes the first example push that nestbot handles.
func example(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: intake example OUT")
	}
	path := filepath.Join(fixtures.NodeModules(), "@octokit", "webhooks-examples", "api.github.com", "index.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w (run .ci/fixtures)", err)
	}
	var index []struct {
		Name     string            `json:"name"`
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, e := range index {
		if e.Name != "push" {
			continue
		}
		for _, p := range e.Examples {
			if _, handled, _ := webhook.Classify("push", p); handled {
				return os.WriteFile(args[0], p, 0o600)
			}
		}
	}
	return fmt.Errorf("%s: no push to the default branch", path)
}

func sign(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: intake sign SECRET-FILE FILE")
	}
	secret, err := readSecrets(args[0])
	if err != nil {
		return err
	}
	body, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	fmt.Println(webhook.Sign(secret[0], body))
	return nil
}

func freeport() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return nil
}

func readSecrets(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return webhook.ParseSecrets(string(b))
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	dbPath := fs.String("db", "nestbot.db", "bbolt state file")
	secretFile := fs.String("secret-file", "", "file holding the webhook secret")
	workers := fs.Int("workers", webhook.DefaultWorkers, "workers (their jobs do nothing)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole serve to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	secrets, err := readSecrets(*secretFile)
	if err != nil {
		return err
	}
	db, err := store.Open(*dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	// The pieces of webhook.Server, so that each request can get an id
	// of its own on its way in.
	pool := &webhook.Pool{Queue: db.Queue(), Workers: *workers, Logger: slog.Default(),
		Run: func(context.Context, store.Job) error { return nil }}
	if err := pool.Start(); err != nil {
		return err
	}
	intake := &webhook.Handler{Secrets: secrets, Queue: db.Queue(), Accepted: pool.Notify, Logger: slog.Default()}
	var n atomic.Uint64
	mux := http.NewServeMux()
	mux.HandleFunc("/webhook", func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set(webhook.HeaderDelivery, r.Header.Get(webhook.HeaderDelivery)+"-"+strconv.FormatUint(n.Add(1), 10))
		intake.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hs := &http.Server{Handler: mux}
	go func() {
		<-ctx.Done()
		hs.Shutdown(context.Background())
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return pool.Stop(context.Background())
}
