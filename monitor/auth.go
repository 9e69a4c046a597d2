package monitor

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// Caller is who asks: an API token's role and, for members and viewers,
// the projects it is scoped to.
type Caller struct {
	Role     rackcloud.Role
	Projects []string
}

// Fleet reports whether c sees the whole fleet (hosts, BMCs, boot
// services, every project's guests): admins and operators.
func (c Caller) Fleet() bool {
	return c.Role == rackcloud.RoleAdmin || c.Role == rackcloud.RoleOperator
}

// Sees reports whether c may see things of project id.
func (c Caller) Sees(project string) bool {
	return c.Fleet() || (c.Role == rackcloud.RoleMember || c.Role == rackcloud.RoleViewer) && slices.Contains(c.Projects, project)
}

// ErrBadToken is an unknown, expired or missing token (401).
var ErrBadToken = store.ErrBadToken

// Authenticator checks a bearer token's secret.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (Caller, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, secret string) (Caller, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, secret string) (Caller, error) {
	return f(ctx, secret)
}

var _ Authenticator = AuthenticatorFunc(nil)

// StoreAuth checks API tokens in the state store (one indexed lookup per
// request: Prometheus asks once per refresh interval and job, and a
// revoked token stops working at once).
func StoreAuth(q store.Querier) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context, secret string) (Caller, error) {
		rec, err := store.Authenticate(ctx, q, secret, time.Now())
		if err != nil {
			return Caller{}, err
		}
		return Caller{Role: rec.Role, Projects: rec.ProjectIDs}, nil
	})
}

// bearer returns the request's bearer secret, or "". A bare token (no
// scheme) is taken too: Debian's Prometheus 2.42 sends http_sd_configs'
// authorization credentials without "Bearer " unless its type is given.
func bearer(r *http.Request) string {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if strings.HasPrefix(h, store.TokenPrefix) && !strings.ContainsRune(h, ' ') {
		return h
	}
	scheme, secret, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(secret)
}

// authenticate answers 401 or 503 itself and returns ok false when the
// request has no valid token.
func authenticate(w http.ResponseWriter, r *http.Request, a Authenticator, problem ProblemFunc) (Caller, bool) {
	secret := bearer(r)
	if secret == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rackcloud"`)
		problem(w, r, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token>")
		return Caller{}, false
	}
	c, err := a.Authenticate(r.Context(), secret)
	switch {
	case errors.Is(err, ErrBadToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="rackcloud", error="invalid_token"`)
		problem(w, r, http.StatusUnauthorized, "unknown or expired token")
		return Caller{}, false
	case err != nil:
		problem(w, r, http.StatusServiceUnavailable, "cannot check the token now")
		return Caller{}, false
	}
	return c, true
}

// ProblemFunc answers a request with an error status and a line for
// people (the server passes api.API.WriteProblem, which writes RFC 9457
// problem documents).
type ProblemFunc func(w http.ResponseWriter, r *http.Request, status int, detail string)

func plainProblem(w http.ResponseWriter, _ *http.Request, status int, detail string) {
	http.Error(w, detail, status)
}
