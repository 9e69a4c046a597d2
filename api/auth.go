package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// principal is who calls: a token of a user with a role over projects.
type principal struct {
	TokenID   string
	TokenName string
	UserID    string
	User      string
	Role      rackcloud.Role
	Projects  []string
}

// staff reports whether p sees and changes the whole fleet.
func (p *principal) staff() bool {
	return p.Role == rackcloud.RoleAdmin || p.Role == rackcloud.RoleOperator
}

// projectFilter is nil for staff (everything) and the token's projects for
// members and viewers.
func (p *principal) projectFilter() []string {
	if p.staff() {
		return nil
	}
	if p.Projects == nil {
		return []string{}
	}
	return p.Projects
}

// sees reports whether p may see things of project id.
func (p *principal) sees(project string) bool {
	return p.staff() || slices.Contains(p.Projects, project)
}

// actor names p in the audit log: a boot service by its token's name
// (boot:rack1), everyone else by their user.
func (p *principal) actor() string {
	if p.Role == rackcloud.RoleBoot {
		return "boot:" + p.TokenName
	}
	return "user:" + p.User
}

// roleRank orders roles from least to most powerful.
func roleRank(r rackcloud.Role) int {
	switch r {
	case rackcloud.RoleViewer, rackcloud.RoleBoot:
		return 1
	case rackcloud.RoleMember:
		return 2
	case rackcloud.RoleOperator:
		return 3
	case rackcloud.RoleAdmin:
		return 4
	}
	return 0
}

// access is the set of roles allowed to call an operation.
type access []rackcloud.Role

var (
	anyRole   = access{rackcloud.RoleAdmin, rackcloud.RoleOperator, rackcloud.RoleMember, rackcloud.RoleViewer}
	writers   = access{rackcloud.RoleAdmin, rackcloud.RoleOperator, rackcloud.RoleMember}
	staffOnly = access{rackcloud.RoleAdmin, rackcloud.RoleOperator}
	// bootService may read boot profiles and record boot events: the
	// boot role's only two operations.
	bootService = access{rackcloud.RoleAdmin, rackcloud.RoleOperator, rackcloud.RoleBoot}
	adminOnly   = access{rackcloud.RoleAdmin}
)

func (ac access) String() string {
	s := make([]string, len(ac))
	for i, r := range ac {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

type principalKey struct{}
type requestIDKey struct{}

func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	if p == nil {
		// Unreachable for registered operations: authenticate ran.
		return &principal{Role: "", Projects: []string{}}
	}
	return p
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// requestID takes the caller's X-Request-ID when it is sane, else makes
// one, and echoes it on the response and in problem documents.
func (a *API) requestID(ctx huma.Context, next func(huma.Context)) {
	id := ctx.Header("X-Request-ID")
	if !requestIDRE.MatchString(id) {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
	}
	ctx.SetHeader("X-Request-ID", id)
	next(huma.WithValue(ctx, requestIDKey{}, id))
}

// authenticate checks the bearer token and the operation's roles.
func (a *API) authenticate(ctx huma.Context, next func(huma.Context)) {
	allow, protected := a.access[ctx.Operation().OperationID]
	if !protected {
		next(ctx)
		return
	}
	scheme, secret, _ := strings.Cut(ctx.Header("Authorization"), " ")
	if !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(secret) == "" {
		ctx.SetHeader("WWW-Authenticate", `Bearer realm="rackcloud"`)
		_ = huma.WriteErr(a.huma, ctx, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token>")
		return
	}
	rec, err := store.Authenticate(ctx.Context(), a.deps.Pool, strings.TrimSpace(secret), a.deps.Now())
	if errors.Is(err, store.ErrBadToken) {
		ctx.SetHeader("WWW-Authenticate", `Bearer realm="rackcloud", error="invalid_token"`)
		_ = huma.WriteErr(a.huma, ctx, http.StatusUnauthorized, "unknown or expired token")
		return
	}
	if err != nil {
		a.log.Error("api: authenticate", "err", err)
		_ = huma.WriteErr(a.huma, ctx, http.StatusServiceUnavailable, "cannot check the token now")
		return
	}
	p := &principal{TokenID: rec.ID, TokenName: rec.Name, UserID: rec.UserID, User: rec.UserName, Role: rec.Role, Projects: rec.ProjectIDs}
	if !slices.Contains(allow, p.Role) {
		if ctx.Method() != http.MethodGet {
			a.auditAsync(ctx.Context(), p, ctx.Operation().OperationID, ctx.URL().Path, "", store.OutcomeDenied,
				"role "+string(p.Role)+" may not call "+ctx.Operation().OperationID)
		}
		_ = huma.WriteErr(a.huma, ctx, http.StatusForbidden,
			"role "+string(p.Role)+" may not call "+ctx.Operation().OperationID+" (allowed: "+allow.String()+")")
		return
	}
	next(huma.WithValue(ctx, principalKey{}, p))
}

// register adds an operation with the roles allowed to call it, the
// common error responses and the body limit.
func register[I, O any](a *API, op huma.Operation, allow access, h func(context.Context, *I) (*O, error)) {
	a.access[op.OperationID] = allow
	if op.Description == "" {
		op.Description = op.Summary + "."
	}
	op.Description += "\n\nAllowed roles: " + allow.String() + "."
	op.Errors = append([]int{http.StatusUnauthorized, http.StatusForbidden}, op.Errors...)
	if op.Method != http.MethodGet {
		op.Errors = append(op.Errors, http.StatusUnprocessableEntity)
	}
	op.MaxBodyBytes = DefaultMaxBodyBytes
	if _, hasBody := reflect.TypeFor[I]().FieldByName("Body"); hasBody {
		op.Errors = append(op.Errors, http.StatusRequestEntityTooLarge)
	}
	slices.Sort(op.Errors)
	op.Errors = slices.Compact(op.Errors)
	huma.Register(a.huma, op, h)
}

// IfMatch is the optimistic-concurrency precondition of updates and
// deletes.
type IfMatch struct {
	IfMatch []string `header:"If-Match" doc:"The ETag you read (or *): the change is refused with 412 when the resource changed since." example:"\"3\""`
}

// checkMatch answers 412 when the caller's If-Match does not name version.
func checkMatch(c IfMatch, version int64) error {
	if len(c.IfMatch) == 0 {
		return nil
	}
	tag := strings.Trim(etag(version), `"`)
	for _, m := range c.IfMatch {
		if m == "*" || strings.Trim(strings.TrimPrefix(m, "W/"), `"`) == tag {
			return nil
		}
	}
	return huma.Error412PreconditionFailed("If-Match " + strings.Join(c.IfMatch, ", ") + " does not match the current ETag " + etag(version))
}

// matchVersion is the version a write must still find: the one If-Match
// names, else 0 (any).
func matchVersion(c IfMatch, current int64) int64 {
	if len(c.IfMatch) > 0 {
		return current
	}
	return 0
}

func isNotFound(err error) bool { return errors.Is(err, rackcloud.ErrNotFound) }
