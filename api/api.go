// Package api is rackcloud's REST API: a huma/v2 OpenAPI 3.1 server under
// /v1. It owns the mapping of domain errors to HTTP status codes and RFC 9457
// problem documents, the resources' wire shapes, authentication (bearer
// tokens) and authorization (roles scoped to projects), the audit log,
// keyset pagination, ETags and preconditions. Queries are synchronous;
// changes that touch machines are tasks (202 Accepted, a Location to
// /v1/tasks/{id} and the task in the body).
//
// # The first token
//
// Every operation needs a bearer token, so the first admin token comes
// from outside the API, with access to the database only:
//
//   - rackcloud token bootstrap --database-url URL prints a new admin
//     token once (it refuses when an admin token exists, unless --force);
//   - the server's Config.BootstrapTokenFile gets a new admin token
//     (mode 0600) when the file does not exist, once the database is
//     ready: this is what the lab uses;
//   - store.Bootstrap does either from Go.
//
// All are audited. Tokens are 256 random bits ("rct_" + base64url);
// only their SHA-256 is stored, and POST /v1/tokens shows a new secret
// once.
//
// # Roles
//
// admin does everything; operator runs the fleet (regions, zones, racks,
// hosts, images, alert rules) and sees every project, but manages no
// projects, users or quotas; member sees and changes the guests and
// placement groups of its token's projects; viewer only reads those.
// Members and viewers get 404 for other projects' resources, and 403 for
// hosts and racks. Every change, and every refused change, is in the
// audit log.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Version is the API's version in the OpenAPI document.
const Version = "0.1.0"

// DefaultMaxBodyBytes caps request bodies; larger ones get 413.
const DefaultMaxBodyBytes = 64 << 10

// Deps are what the API needs.
type Deps struct {
	Pool       *pgxpool.Pool
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Tasks runs the changes that touch machines; nil makes those
	// operations answer 503.
	Tasks TaskEngine
	// Sealer encrypts BMC passwords at rest; nil refuses BMC credentials.
	Sealer Sealer
	// Now is the clock (token expiry); nil means time.Now.
	Now func() time.Time
	// Placer answers placement dry runs; nil makes them answer 503.
	Placer Placer
	// Consoles reads guests' console output; nil makes it answer 503.
	Consoles Consoles
	// Alerts lists Alertmanager's alerts (GET /v1/alerts); nil makes it
	// answer 503.
	Alerts ActiveAlerts
}

// Sealer encrypts a secret for storage; aad (the host's ID) binds the
// sealed value to its record. *store.Sealer is one.
type Sealer interface {
	Seal(plaintext string, aad []byte) (string, error)
}

var _ Sealer = (*store.Sealer)(nil)

// API is the REST API.
type API struct {
	deps    Deps
	log     *slog.Logger
	mux     *http.ServeMux
	huma    huma.API
	metrics *metrics
	// access holds each operation's allowed roles, by operation ID.
	access map[string]access
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
	if d.Now == nil {
		d.Now = time.Now
	}
	f := promauto.With(d.Registerer)
	a := &API{deps: d, log: d.Logger, mux: http.NewServeMux(), access: map[string]access{}, metrics: &metrics{
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
	cfg.Info.Description = apiDescription
	cfg.Info.License = &huma.License{Name: "Apache-2.0", Identifier: "Apache-2.0"}
	cfg.Info.Contact = &huma.Contact{Name: "rackcloud", URL: "https://rackcloud.dev"}
	cfg.Servers = []*huma.Server{{URL: "http://127.0.0.1:8080", Description: "A local rackcloud server (make run)."}}
	cfg.DocsPath = "" // registerDocs serves it, offline
	cfg.OpenAPIPath = "/openapi"
	cfg.CreateHooks = nil // no $schema links in bodies: clients see only documented fields
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", BearerFormat: "rct_<43 base64url characters>",
			Description: "A token from POST /v1/tokens or `rackcloud token bootstrap`: `Authorization: Bearer rct_...`."},
	}
	cfg.Security = []map[string][]string{{"bearer": {}}}
	cfg.Transformers = append(cfg.Transformers, problemInstance)
	a.huma = humago.New(a.mux, cfg)
	a.huma.UseMiddleware(a.requestID, a.observe, a.authenticate, a.checkText)
	registerDocs(a, cfg.Info.Title+" reference", cfg.OpenAPIPath)
	registerTags(a)
	registerRegions(a)
	registerLocation(a)
	registerHosts(a)
	registerEvacuate(a)
	registerAvailability(a)
	registerImages(a)
	registerProjects(a)
	registerGuests(a)
	registerPlacement(a)
	registerConsole(a)
	registerUsers(a)
	registerTokens(a)
	registerAlertRules(a)
	registerActiveAlerts(a)
	registerEnrollRules(a)
	registerAudit(a)
	registerTasks(a)
	registerBoot(a)
	registerInstalls(a)
	documentProblems(a.huma.OpenAPI())
	return a
}

// documentProblems says in the error schema which problem types exist.
func documentProblems(oa *huma.OpenAPI) {
	s := oa.Components.Schemas.Map()["ErrorModel"]
	if s == nil {
		return
	}
	s.Description = "An RFC 9457 problem document (application/problem+json)."
	if t := s.Properties["type"]; t != nil {
		t.Description = "The kind of error, stable across releases: " + strings.Join([]string{ProblemValidation,
			ProblemNotFound, ProblemMethodNotAllowed, ProblemConflict, ProblemPrecondition, ProblemQuota, ProblemUnauthorized, ProblemForbidden,
			ProblemTooLarge, ProblemNotImplemented, ProblemUnavailable, ProblemInternal}, ", ") + "."
		t.Examples = []any{ProblemValidation}
	}
	if i := s.Properties["instance"]; i != nil {
		i.Description = "The request's ID (X-Request-ID) as a URN, to find it in logs and the audit log."
		i.Examples = []any{"urn:rackcloud:request:5b2c0f8e9a1d4e7f3c6b8a90"}
	}
}

const apiDescription = `rackcloud turns racks of servers into a cloud: regions, zones, racks, hosts,
images, guests, placement groups, projects, tokens, quotas, alert rules, tasks
and the audit log.

- **Authentication**: every operation takes ` + "`Authorization: Bearer <token>`" + `.
  Roles are admin, operator, member and viewer; members and viewers see only the
  projects their token is scoped to, and only admins and operators touch hosts.
- **Changes that touch machines are tasks**: they answer 202 Accepted with a
  ` + "`Location`" + ` header to /v1/tasks/{id} and the task in the body; follow it with
  GET /v1/tasks/{id} or the server-sent events of GET /v1/tasks/{id}/events.
- **Lists** are keyset-paginated: pass ` + "`cursor`" + ` from the previous page's
  ` + "`next_cursor`" + ` or follow the ` + "`Link: <...>; rel=\"next\"`" + ` header.
- **Concurrency**: every resource has an ETag; send ` + "`If-Match`" + ` on updates and
  deletes to get 412 instead of overwriting someone else's change.
- **Errors** are RFC 9457 problem documents (application/problem+json) whose
  ` + "`type`" + ` names the kind of error.`

// Handler serves the API.
func (a *API) Handler() http.Handler { return http.HandlerFunc(a.serveHTTP) }

// OpenAPI returns the API's OpenAPI document.
func (a *API) OpenAPI() *huma.OpenAPI { return a.huma.OpenAPI() }

func (a *API) observe(ctx huma.Context, next func(huma.Context)) {
	start := time.Now()
	next(ctx)
	op := ctx.Operation().OperationID
	d := time.Since(start)
	a.metrics.requests.WithLabelValues(op, strconv.Itoa(ctx.Status())).Inc()
	a.metrics.duration.WithLabelValues(op).Observe(d.Seconds())
	if a.log.Enabled(ctx.Context(), slog.LevelDebug) {
		a.log.Debug("api request", "operation", op, "status", ctx.Status(), "duration", d,
			"request_id", requestIDFrom(ctx.Context()))
	}
}

// Problem types: one stable URI per error kind (RFC 9457 "type").
const (
	ProblemValidation       = "https://rackcloud.dev/problems/validation"
	ProblemNotFound         = "https://rackcloud.dev/problems/not-found"
	ProblemMethodNotAllowed = "https://rackcloud.dev/problems/method-not-allowed"
	ProblemConflict         = "https://rackcloud.dev/problems/conflict"
	ProblemPrecondition     = "https://rackcloud.dev/problems/precondition-failed"
	ProblemQuota            = "https://rackcloud.dev/problems/quota-exceeded"
	ProblemUnauthorized     = "https://rackcloud.dev/problems/unauthorized"
	ProblemForbidden        = "https://rackcloud.dev/problems/forbidden"
	ProblemTooLarge         = "https://rackcloud.dev/problems/body-too-large"
	ProblemNotImplemented   = "https://rackcloud.dev/problems/not-implemented"
	ProblemUnavailable      = "https://rackcloud.dev/problems/unavailable"
	ProblemInternal         = "https://rackcloud.dev/problems/internal"
)

func init() {
	// Lists are never null on the wire: say so, so that generated clients
	// need no null checks.
	huma.DefaultArrayNullable = false
	base := huma.NewError
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		se := base(status, msg, errs...)
		if m, ok := se.(*huma.ErrorModel); ok && (m.Type == "" || m.Type == "about:blank") {
			m.Type = problemType(status)
		}
		return se
	}
}

// problemInstance names the request in every problem document: huma
// writes every error, its own and the handlers', through the transformers.
func problemInstance(ctx huma.Context, _ string, v any) (any, error) {
	if m, ok := v.(*huma.ErrorModel); ok && m.Instance == "" {
		if id := requestIDFrom(ctx.Context()); id != "" {
			m.Instance = "urn:rackcloud:request:" + id
		}
	}
	return v, nil
}

func problemType(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusUnsupportedMediaType:
		return ProblemValidation
	case http.StatusRequestEntityTooLarge:
		return ProblemTooLarge
	case http.StatusNotFound:
		return ProblemNotFound
	case http.StatusMethodNotAllowed:
		return ProblemMethodNotAllowed
	case http.StatusConflict:
		return ProblemConflict
	case http.StatusPreconditionFailed, http.StatusPreconditionRequired:
		return ProblemPrecondition
	case http.StatusUnauthorized:
		return ProblemUnauthorized
	case http.StatusForbidden:
		return ProblemForbidden
	case http.StatusNotImplemented:
		return ProblemNotImplemented
	case http.StatusServiceUnavailable:
		return ProblemUnavailable
	case http.StatusInternalServerError:
		return ProblemInternal
	default:
		return "about:blank"
	}
}

// databaseUnavailable tells a lost or refused database connection from
// other failures: the client should retry later (a 503, not a 500).
func databaseUnavailable(err error) bool {
	var ce *pgconn.ConnectError
	var oe *net.OpError
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &ce), errors.As(err, &oe):
		return true
	case errors.As(err, &pe):
		// 08: connection exception; 57P01-03: shutdown, crash, cannot
		// connect now.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	return false
}

// quotaProblem is a 403 whose type says the project's quota is too small.
func quotaProblem(detail string) huma.StatusError {
	return &huma.ErrorModel{Type: ProblemQuota, Title: "Quota exceeded", Status: http.StatusForbidden, Detail: detail}
}

// problem maps a domain error to a huma status error. Unknown errors are
// logged and reported as a 500 without internals.
func (a *API) problem(err error) error {
	var se huma.StatusError
	var nf *notFoundError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return err
	case errors.Is(err, store.ErrQuotaExceeded):
		return quotaProblem(err.Error())
	case errors.Is(err, store.ErrStaleVersion):
		return huma.Error412PreconditionFailed(err.Error())
	case errors.As(err, &nf):
		return huma.Error404NotFound(nf.Error())
	case errors.Is(err, rackcloud.ErrNotFound):
		return huma.Error404NotFound("not found")
	case errors.Is(err, rackcloud.ErrConflict):
		return huma.Error409Conflict(err.Error())
	case errors.Is(err, rackcloud.ErrInvalid):
		if errors.Is(err, tasks.ErrUnknownKind) {
			return huma.NewError(http.StatusNotImplemented, "not implemented yet: this server has no worker for this kind of task")
		}
		return huma.Error422UnprocessableEntity(err.Error())
	case unstorableText(err):
		return huma.Error422UnprocessableEntity("text must be valid UTF-8 without U+0000: the database refused a string")
	case errors.Is(err, context.Canceled):
		return huma.NewError(499, "request canceled")
	case databaseUnavailable(err):
		a.log.Warn("api: database unavailable", "err", err)
		return huma.Error503ServiceUnavailable("the database is unavailable; retry later")
	}
	a.log.Error("api: internal error", "err", err)
	return huma.Error500InternalServerError("internal error")
}

// notFoundError is a rackcloud.ErrNotFound that names what was asked for:
// its 404 says `region "x" not found`.
type notFoundError struct {
	kind, id string
	err      error
}

// notFound names a lookup's rackcloud.ErrNotFound by the resource's kind
// and the ID asked for; other errors pass unchanged.
func notFound(err error, kind, id string) error {
	if !isNotFound(err) {
		return err
	}
	return &notFoundError{kind: kind, id: id, err: err}
}

func (e *notFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.kind, e.id) }
func (e *notFoundError) Unwrap() error { return e.err }

// etag returns the strong ETag of a resource version.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

func registerTags(a *API) {
	oa := a.huma.OpenAPI()
	for _, t := range []struct{ name, doc string }{
		{"Regions", "The top of the location tree."},
		{"Zones", "Failure domains inside a region."},
		{"Racks", "Racks of hosts inside a zone (operators only)."},
		{"Hosts", "Physical servers: registered by MAC or BMC, enrolled, provisioned, drained (operators only)."},
		{"Images", "OS images for hosts and guests."},
		{"Guests", "VMs, containers and whole machines given to projects."},
		{"Placement groups", "Keep a project's guests together or apart."},
		{"Projects", "Owners of guests, with a quota each."},
		{"Users", "People and programs (admins only)."},
		{"Tokens", "Bearer tokens; the secret is shown once."},
		{"Alert rules", "Thresholds over metrics, rendered into Prometheus rules."},
		{"Alerts", "What fires now, from Alertmanager."},
		{"Audit", "Who changed what, and how it ended."},
		{"Availability", "Alertmanager's webhook: a host that died is fenced and its HA guests restarted elsewhere (operators only)."},
		{"Tasks", "Durable changes with steps; follow them by polling or server-sent events."},
	} {
		oa.Tags = append(oa.Tags, &huma.Tag{Name: t.name, Description: t.doc})
	}
}
