package api

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// UserBody creates a user.
type UserBody struct {
	Name   string            `json:"name" pattern:"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Unique name." example:"alice"`
	Email  string            `json:"email,omitempty" format:"email" maxLength:"254" doc:"Contact address." example:"alice@example.com"`
	Labels map[string]string `json:"labels,omitempty" doc:"Labels for selection and grouping."`
}

// UserUpdateBody changes a user.
type UserUpdateBody struct {
	Email  *string           `json:"email,omitempty" format:"email" maxLength:"254" doc:"Contact address."`
	Labels map[string]string `json:"labels,omitempty" doc:"Replaces all labels when present."`
}

// TokenBody creates a token.
type TokenBody struct {
	Name       string            `json:"name" pattern:"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Name, unique for the user." example:"ci"`
	UserID     string            `json:"user_id,omitempty" format:"uuid" doc:"The token's user; only admins may name another user than their own."`
	Role       string            `json:"role" enum:"admin,operator,member,viewer,boot" doc:"What the token may do; at most the caller's own role. A boot token (for a boot service: boot profiles and boot events only) is minted by admins and operators."`
	ProjectIDs []string          `json:"project_ids,omitempty" maxItems:"100" uniqueItems:"true" doc:"Projects a member or viewer token works in; members may only give their own projects." example:"[\"5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f\"]"`
	TTLSeconds int64             `json:"ttl_seconds,omitempty" minimum:"60" maximum:"315360000" doc:"Lifetime in seconds; absent means no expiry." example:"86400"`
	Labels     map[string]string `json:"labels,omitempty" doc:"Labels for selection and grouping."`
}

// NewToken is a created token with its secret, shown only this once.
type NewToken struct {
	Token  Token  `json:"token" doc:"The token."`
	Secret string `json:"secret" doc:"The bearer secret. It is not stored and cannot be shown again." example:"rct_4q0Xz..."`
}

type newTokenOutput struct {
	Location string `header:"Location" doc:"The token's URL."`
	Body     NewToken
}

func registerUsers(a *API) {
	c := &crud[rackcloud.User, User]{a: a, tag: "Users", path: "/v1/users", kind: "user", opName: "User", plural: "Users",
		read: adminOnly, write: adminOnly, get: store.GetUser, list: store.ListUsers, del: store.DeleteUser,
		meta: func(u rackcloud.User) rackcloud.Meta { return u.Meta }, out: userOut,
		delDoc: "Deletes a user and revokes all its tokens."}
	c.registerAll("Lists users in name order, keyset-paginated.")
	register(a, huma.Operation{
		OperationID: "createUser", Method: http.MethodPost, Path: "/v1/users", Summary: "Create a user",
		Tags: []string{c.tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, adminOnly, func(ctx context.Context, in *struct{ Body UserBody }) (*itemOutput[User], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return c.created(ctx, a.newChange(ctx, "createUser", "user/"+in.Body.Name), func(tx pgx.Tx) (rackcloud.User, error) {
			return store.CreateUser(ctx, tx, rackcloud.User{Meta: rackcloud.Meta{Name: in.Body.Name, Labels: in.Body.Labels}, Email: in.Body.Email})
		})
	})
	register(a, huma.Operation{
		OperationID: "updateUser", Method: http.MethodPatch, Path: "/v1/users/{id}", Summary: "Update a user",
		Tags: []string{c.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, adminOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body UserUpdateBody
	}) (*itemOutput[User], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return c.patch(ctx, "updateUser", in.ID, in.IfMatch, func(_ pgx.Tx, u *rackcloud.User) error {
			if in.Body.Email != nil {
				u.Email = *in.Body.Email
			}
			if in.Body.Labels != nil {
				u.Labels = in.Body.Labels
			}
			return nil
		}, store.UpdateUser)
	})
}

func registerTokens(a *API) {
	c := &crud[store.TokenRecord, Token]{a: a, tag: "Tokens", path: "/v1/tokens", kind: "token", opName: "Token", plural: "Tokens",
		read: anyRole, write: writers, get: store.GetToken, list: store.ListTokens, del: store.DeleteToken,
		meta: func(t store.TokenRecord) rackcloud.Meta { return t.Meta }, out: tokenOut,
		delDoc: "Revokes a token at once. Admins revoke any token; others only their own user's."}
	// Tokens are scoped by user, not project: wrap get and list.
	get := c.get
	c.get = func(ctx context.Context, q store.Querier, id string) (store.TokenRecord, error) {
		t, err := get(ctx, q, id)
		if err != nil {
			return t, err
		}
		if p := principalFrom(ctx); p.Role != rackcloud.RoleAdmin && t.UserID != p.UserID {
			return store.TokenRecord{}, rackcloud.ErrNotFound
		}
		return t, nil
	}
	list := c.list
	c.list = func(ctx context.Context, q store.Querier, f store.Filter) ([]store.TokenRecord, error) {
		if p := principalFrom(ctx); p.Role != rackcloud.RoleAdmin {
			f.Parent = p.UserID
		}
		return list(ctx, q, f)
	}
	c.registerAll("Lists tokens (never their secrets) in name order. Admins see all tokens; others their own user's.")

	register(a, huma.Operation{
		OperationID: "getCurrentToken", Method: http.MethodGet, Path: "/v1/whoami", Summary: "Describe the calling token",
		Description: "Returns the token the request was made with: its user, role and projects.",
		Tags:        []string{c.tag},
	}, anyRole, func(ctx context.Context, _ *struct{}) (*itemOutput[Token], error) {
		t, err := store.GetToken(ctx, a.deps.Pool, principalFrom(ctx).TokenID)
		if err != nil {
			return nil, a.problem(err)
		}
		return item(tokenOut(t), t.Version), nil
	})

	register(a, huma.Operation{
		OperationID: "createToken", Method: http.MethodPost, Path: "/v1/tokens", Summary: "Create a token",
		Description: "Creates a bearer token and returns its secret once; only its hash is stored. A token's role is at most its creator's; members may only give their own projects, and only admins create tokens for other users.",
		Tags:        []string{c.tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, writers, func(ctx context.Context, in *struct{ Body TokenBody }) (*newTokenOutput, error) {
		b := in.Body
		if err := checkLabels("body.labels", b.Labels); err != nil {
			return nil, err
		}
		p := principalFrom(ctx)
		if b.UserID == "" {
			b.UserID = p.UserID
		}
		ch := a.newChange(ctx, "createToken", "token/"+b.Name)
		deny := func(msg string) (*newTokenOutput, error) {
			a.auditAsync(ctx, p, ch.action, ch.target, "", store.OutcomeDenied, msg)
			return nil, huma.Error403Forbidden(msg)
		}
		role := rackcloud.Role(b.Role)
		switch {
		case p.Role != rackcloud.RoleAdmin && b.UserID != p.UserID:
			return deny("only admins create tokens for other users")
		case role == rackcloud.RoleBoot && !p.staff():
			return deny("only admins and operators mint boot tokens")
		case roleRank(role) > roleRank(p.Role):
			return deny("a token's role cannot exceed its creator's (" + string(p.Role) + ")")
		}
		if !p.staff() {
			for _, id := range b.ProjectIDs {
				if !slices.Contains(p.Projects, id) {
					return deny("you may only give your own projects (not " + id + ")")
				}
			}
		}
		t := rackcloud.Token{Meta: rackcloud.Meta{Name: b.Name, Labels: b.Labels}, UserID: b.UserID, Role: role, ProjectIDs: b.ProjectIDs,
			ParentID: p.TokenID}
		if b.TTLSeconds > 0 {
			exp := a.deps.Now().Add(time.Duration(b.TTLSeconds) * time.Second)
			t.ExpiresAt = &exp
		}
		var rec store.TokenRecord
		var secret string
		err := a.run(ctx, ch, func(tx pgx.Tx) (err error) {
			if _, err := store.GetUser(ctx, tx, b.UserID); err != nil {
				return notFoundField(err, "body.user_id", b.UserID)
			}
			for i, id := range b.ProjectIDs {
				if _, err := store.GetProject(ctx, tx, id); err != nil {
					return notFoundField(err, "body.project_ids["+itoa(i)+"]", id)
				}
			}
			rec, secret, err = store.CreateToken(ctx, tx, t)
			ch.target = c.target(rec.ID)
			return err
		})
		if err != nil {
			return nil, err
		}
		return &newTokenOutput{Location: c.path + "/" + rec.ID, Body: NewToken{Token: tokenOut(rec), Secret: secret}}, nil
	})
}
