package webhook

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ducksnest/nestbot/internal/buildinfo"
	"github.com/ducksnest/nestbot/store"
)

// Metrics is nestbot's Prometheus metrics, in a registry of its own (not
// the global default one):
//
//	nestbot_webhook_deliveries_total{event,result}   deliveries, by the Result* of intake
//	nestbot_queue_depth                              jobs queued or running (read at scrape time)
//	nestbot_job_duration_seconds{event,result}       jobs run, by ok, failed, superseded, abandoned
//	nestbot_github_api_calls_total{method,status}    calls to the GitHub API (status "error" without a response)
//	nestbot_github_rate_limit_remaining              the rate limit GitHub reported last
//	nestbot_plans_total{result}                      plans made
//	nestbot_applies_total{result}                    applies run
//	nestbot_hosts{state}                             hosts by state, as the last observation found them
//	nestbot_build_info{version,revision,goversion,goos,goarch}   1, labelled with this binary's build
//
// plus the Go runtime's and the process's own. The methods are safe for
// concurrent use, and do nothing on a nil *Metrics.
type Metrics struct {
	reg         *prometheus.Registry
	deliveries  *prometheus.CounterVec
	jobDuration *prometheus.HistogramVec
	apiCalls    *prometheus.CounterVec
	rateLimit   prometheus.Gauge
	plans       *prometheus.CounterVec
	applies     *prometheus.CounterVec
	hosts       *prometheus.GaugeVec
	unverified  prometheus.Gauge
}

// NewMetrics returns the metrics, with nestbot_queue_depth read from q at
// each scrape (bounded to 2 s; no such gauge when q is nil).
func NewMetrics(q store.Queue) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nestbot_webhook_deliveries_total",
			Help: "Webhook deliveries received, by event and by what intake did with them.",
		}, []string{"event", "result"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nestbot_job_duration_seconds",
			Help:    "Time jobs ran, by event and result (ok, failed, superseded, abandoned).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"event", "result"}),
		apiCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nestbot_github_api_calls_total",
			Help: "Calls to the GitHub API, by HTTP method and response status.",
		}, []string{"method", "status"}),
		rateLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nestbot_github_rate_limit_remaining",
			Help: "Requests left in the GitHub API rate limit, as its last response said.",
		}),
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nestbot_plans_total",
			Help: "Plans made, by result.",
		}, []string{"result"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nestbot_applies_total",
			Help: "Applies run, by result.",
		}, []string{"result"}),
		hosts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nestbot_hosts",
			Help: "Hosts by state, as the last observation found them.",
		}, []string{"state"}),
		unverified: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nestbot_webhook_unverified_requests",
			Help: "Deliveries whose body is being read, before their signature is checked.",
		}),
	}
	bi := buildinfo.Read()
	goos, goarch, _ := strings.Cut(bi.Platform, "/")
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nestbot_build_info",
		Help: "Always 1; the labels say which nestbot build runs (nestbot version prints the same).",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Commit, "goversion": bi.GoVersion,
			"goos": goos, "goarch": goarch},
	})
	build.Set(1)
	m.reg.MustRegister(m.deliveries, m.jobDuration, m.apiCalls, m.rateLimit, m.plans, m.applies, m.hosts, m.unverified, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if q != nil {
		m.reg.MustRegister(depthCollector{q: q, desc: prometheus.NewDesc("nestbot_queue_depth", "Jobs queued or running.", nil, nil)})
	}
	return m
}

// depthCollector reads the queue's depth at scrape time; when the queue
// cannot say, the gauge is left out of that scrape (/readyz reports why).
type depthCollector struct {
	q    store.Queue
	desc *prometheus.Desc
}

func (c depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := c.q.Depth(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
	}
}

// Registry is the registry the metrics are in, for a caller's own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' exposition format (/metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Delivery counts one delivery of event that intake ended with result.
func (m *Metrics) Delivery(event, result string) {
	if m != nil {
		m.deliveries.WithLabelValues(event, result).Inc()
	}
}

// Unverified moves the count of deliveries being read before their
// signature is checked by delta.
func (m *Metrics) Unverified(delta int) {
	if m != nil {
		m.unverified.Add(float64(delta))
	}
}

// Job records a job of event that ran for d and ended with result.
func (m *Metrics) Job(event, result string, d time.Duration) {
	if m != nil {
		m.jobDuration.WithLabelValues(eventLabel(event), result).Observe(d.Seconds())
	}
}

// GitHubCall counts one call to the GitHub API: its HTTP method and the
// response's status (0 when no response came).
func (m *Metrics) GitHubCall(method string, status int) {
	if m == nil {
		return
	}
	s := "error"
	if status > 0 {
		s = strconv.Itoa(status)
	}
	m.apiCalls.WithLabelValues(method, s).Inc()
}

// RateLimitRemaining sets what GitHub said is left of the rate limit
// (X-RateLimit-Remaining).
func (m *Metrics) RateLimitRemaining(n int) {
	if m != nil {
		m.rateLimit.Set(float64(n))
	}
}

// Plan counts one plan that ended with result ("changes", "no_changes",
// "failed", ...).
func (m *Metrics) Plan(result string) {
	if m != nil {
		m.plans.WithLabelValues(result).Inc()
	}
}

// Apply counts one apply that ended with result ("success", "failure").
func (m *Metrics) Apply(result string) {
	if m != nil {
		m.applies.WithLabelValues(result).Inc()
	}
}

// Hosts sets the number of hosts in each state; states absent from
// byState are dropped.
func (m *Metrics) Hosts(byState map[string]int) {
	if m == nil {
		return
	}
	m.hosts.Reset()
	for state, n := range byState {
		m.hosts.WithLabelValues(state).Set(float64(n))
	}
}
