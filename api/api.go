// Package api is rackcloud's REST API: a huma/v2 OpenAPI 3.1 server under
// /v1. It owns the mapping of domain errors to HTTP status codes and RFC 9457
// problem documents, the resources' wire shapes, pagination, ETags and
// preconditions. Queries are synchronous; changes that touch machines are
// tasks (202 Accepted and a Location to /v1/tasks/{id}).
package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rackcloud/rackcloud"
)

// Version is the API's version in the OpenAPI document.
const Version = "0.1.0"

// Deps are what the API needs.
type Deps struct {
	Pool       *pgxpool.Pool
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// API is the REST API.
type API struct {
	deps    Deps
	mux     *http.ServeMux
	huma    huma.API
	metrics *metrics
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New builds the API and registers its operations on a fresh mux.
func New(d Deps) *API {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Registerer == nil {
		d.Registerer = prometheus.NewRegistry()
	}
	f := promauto.With(d.Registerer)
	a := &API{deps: d, mux: http.NewServeMux(), metrics: &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_api_requests_total",
			Help: "API requests by operation and status code.",
		}, []string{"operation", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rackcloud_api_request_duration_seconds",
			Help:    "API request latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"operation"}),
	}}
	cfg := huma.DefaultConfig("rackcloud API", Version)
	cfg.Info.Description = "rackcloud turns racks of servers into a cloud: regions, zones, racks, hosts, images, guests, placement groups and tasks. Queries are synchronous; changes that touch machines return 202 and a task."
	cfg.DocsPath = "/docs"
	cfg.OpenAPIPath = "/openapi"
	a.huma = humago.New(a.mux, cfg)
	a.huma.UseMiddleware(a.observe)
	registerRegions(a)
	return a
}

// Handler serves the API.
func (a *API) Handler() http.Handler { return a.mux }

// OpenAPI returns the API's OpenAPI document.
func (a *API) OpenAPI() *huma.OpenAPI { return a.huma.OpenAPI() }

func (a *API) observe(ctx huma.Context, next func(huma.Context)) {
	start := time.Now()
	next(ctx)
	op := ctx.Operation().OperationID
	a.metrics.requests.WithLabelValues(op, strconv.Itoa(ctx.Status())).Inc()
	a.metrics.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// Problem types: one stable URI per error kind (RFC 9457 "type").
const (
	ProblemValidation   = "https://rackcloud.dev/problems/validation"
	ProblemNotFound     = "https://rackcloud.dev/problems/not-found"
	ProblemConflict     = "https://rackcloud.dev/problems/conflict"
	ProblemPrecondition = "https://rackcloud.dev/problems/precondition-failed"
	ProblemQuota        = "https://rackcloud.dev/problems/quota-exceeded"
	ProblemUnauthorized = "https://rackcloud.dev/problems/unauthorized"
	ProblemForbidden    = "https://rackcloud.dev/problems/forbidden"
	ProblemInternal     = "https://rackcloud.dev/problems/internal"
)

func init() {
	base := huma.NewError
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		se := base(status, msg, errs...)
		if m, ok := se.(*huma.ErrorModel); ok && (m.Type == "" || m.Type == "about:blank") {
			m.Type = problemType(status)
		}
		return se
	}
}

func problemType(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return ProblemValidation
	case http.StatusNotFound:
		return ProblemNotFound
	case http.StatusConflict:
		return ProblemConflict
	case http.StatusPreconditionFailed:
		return ProblemPrecondition
	case http.StatusUnauthorized:
		return ProblemUnauthorized
	case http.StatusForbidden:
		return ProblemForbidden
	default:
		return "about:blank"
	}
}

// problem maps a domain error to a huma status error. Unknown errors are
// logged and reported as a 500 without internals.
func (a *API) problem(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rackcloud.ErrNotFound):
		return huma.Error404NotFound("not found")
	case errors.Is(err, rackcloud.ErrConflict):
		return huma.Error409Conflict(err.Error())
	case errors.Is(err, rackcloud.ErrInvalid):
		return huma.Error422UnprocessableEntity(err.Error())
	}
	a.deps.Logger.Error("api: internal error", "err", err)
	return huma.Error500InternalServerError("internal error")
}

// etag returns the strong ETag of a resource version.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }
