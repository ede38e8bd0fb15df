package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"

	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/store"
)

// DefaultMaxConns is Config.MaxConns when zero.
const DefaultMaxConns = 256

// DefaultShutdownTimeout is how long Run lets requests and jobs finish
// once its context ends.
const DefaultShutdownTimeout = 30 * time.Second

// Config is what New needs to assemble a Server.
type Config struct {
	// Secrets are the webhook secrets (at least one; see ParseSecrets).
	Secrets [][]byte
	// Queue stores accepted deliveries and feeds the workers.
	Queue store.Queue
	// Workers is how many jobs run at once; 0 means DefaultWorkers.
	Workers int
	// Run runs one job (the GitHub handlers).
	Run func(ctx context.Context, j store.Job) error
	// DeadLetter, if set, reports a job given up after MaxAttempts claims
	// (see Pool.DeadLetter).
	DeadLetter func(ctx context.Context, j store.Job) error
	// Supersedes, if set, replaces SupersedesPlan.
	Supersedes func(newJob, running store.Job) bool
	// Metrics, if nil, is NewMetrics(Queue).
	Metrics *Metrics
	// Logger receives the server's records; nil discards.
	Logger *slog.Logger
	// Lease and Poll are the Pool's; 0 means their defaults.
	Lease, Poll time.Duration
	// MaxBody bounds a delivery; 0 means MaxBody.
	MaxBody int64
	// MaxUnverified bounds the bytes of deliveries being read before their
	// signatures are checked, all together; 0 means DefaultMaxUnverified.
	MaxUnverified int64
	// MaxConns bounds the connections served at once (more wait to be
	// accepted); 0 means DefaultMaxConns.
	MaxConns int
	// ShutdownTimeout bounds the graceful shutdown; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// Server is nestbot serve's HTTP side: intake at /webhook, the workers,
// and /healthz, /readyz, /metrics.
type Server struct {
	cfg     Config
	intake  *Handler
	pool    *Pool
	metrics *Metrics
	mux     *http.ServeMux
}

// New checks cfg and assembles a Server. It refuses to build one without
// a webhook secret, a queue or a Run function.
func New(cfg Config) (*Server, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("webhook: no webhook secret: nestbot serve refuses unsigned deliveries; set --webhook-secret, NESTBOT_WEBHOOK_SECRET or NESTBOT_WEBHOOK_SECRET_FILE")
	}
	for i, s := range cfg.Secrets {
		if len(s) == 0 {
			return nil, fmt.Errorf("webhook: webhook secret %d of %d is empty", i+1, len(cfg.Secrets))
		}
	}
	if cfg.Queue == nil {
		return nil, errors.New("webhook: no queue to store deliveries in")
	}
	if cfg.Run == nil {
		return nil, errors.New("webhook: no Run function for the workers")
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(cfg.Queue)
	}
	s := &Server{cfg: cfg, metrics: m, mux: http.NewServeMux()}
	s.pool = &Pool{
		Queue: cfg.Queue, Workers: cfg.Workers, Run: cfg.Run, Supersedes: cfg.Supersedes, DeadLetter: cfg.DeadLetter,
		Lease: cfg.Lease, Poll: cfg.Poll, Metrics: m, Logger: cfg.Logger,
	}
	s.intake = &Handler{
		Secrets: cfg.Secrets, Queue: cfg.Queue, MaxBody: cfg.MaxBody, MaxUnverified: cfg.MaxUnverified,
		Accepted: s.pool.Notify, Metrics: m, Logger: cfg.Logger,
	}
	s.mux.Handle("/webhook", s.intake)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("GET /readyz", s.ready)
	s.mux.Handle("GET /metrics", m.Handler())
	return s, nil
}

// Handler is the server's routes: /webhook, /healthz, /readyz, /metrics.
func (s *Server) Handler() http.Handler { return s.mux }

// Metrics is the server's metrics, for the GitHub client and the handlers
// to record into.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Run starts the workers and serves on ln until ctx ends; then it stops
// taking deliveries, lets requests and running jobs finish within
// ShutdownTimeout, and returns. Jobs cut short are not recorded as done,
// so they run after a restart.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	if err := s.pool.Start(); err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute, // a 25 MB delivery on a slow link
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	log := logs.Or(s.cfg.Logger)
	hs.ErrorLog = slog.NewLogLogger(log.With("from", "net/http").Handler(), slog.LevelWarn)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(netutil.LimitListener(ln, cmp.Or(s.cfg.MaxConns, DefaultMaxConns))) }()

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("webhook: stopping: no new deliveries taken; running jobs have the timeout to finish", "timeout", s.cfg.ShutdownTimeout.String())
	case serveErr = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	shutErr := hs.Shutdown(sctx)
	if serveErr == nil {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
		}
	}
	stopErr := s.pool.Stop(sctx)
	log.Info("webhook: stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("webhook: serve %s: %w", ln.Addr(), serveErr)
	}
	return errors.Join(shutErr, stopErr)
}

// ready answers 200 when the workers run and the queue answers, else 503
// saying which is not.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if !s.pool.Running() {
		http.Error(w, "workers are not running", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.cfg.Queue.Depth(ctx); err != nil {
		http.Error(w, "the queue does not answer: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}
