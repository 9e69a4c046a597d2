package api

import (
	"context"

	"github.com/danielgtaylor/huma/v2"

	"github.com/rackcloud/rackcloud"
)

// Role sets for Register.
var (
	// AllRoles may read.
	AllRoles = []rackcloud.Role(anyRole)
	// Writers are the roles that change project resources.
	Writers = []rackcloud.Role(writers)
	// Staff are admins and operators: the fleet's hosts and BMCs.
	Staff = []rackcloud.Role(staffOnly)
	// Admins only.
	Admins = []rackcloud.Role(adminOnly)
)

// Register adds an operation from another package (the boot service's
// endpoints, service discovery, webhooks) with the API's conventions:
// bearer-token authentication, the roles allowed to call it, problem
// documents, the body limit and the request ID. Call it before serving.
func Register[I, O any](a *API, op huma.Operation, roles []rackcloud.Role, h func(context.Context, *I) (*O, error)) {
	register(a, op, access(roles), h)
}

// Caller describes who made a request, for operations added by Register.
type Caller struct {
	TokenID  string
	UserID   string
	User     string
	Role     rackcloud.Role
	Projects []string
}

// CallerFrom returns the caller of a request served by an operation added
// with Register.
func CallerFrom(ctx context.Context) Caller {
	p := principalFrom(ctx)
	return Caller{TokenID: p.TokenID, UserID: p.UserID, User: p.User, Role: p.Role, Projects: p.Projects}
}

// Huma is the underlying huma API, for SSE or streaming operations; use
// Register for ordinary ones so that they are authenticated.
func (a *API) Huma() huma.API { return a.huma }
