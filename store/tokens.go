package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

// TokenPrefix starts every token secret, so that secrets are easy to
// recognise (and to scan for when leaked).
const TokenPrefix = "rct_"

// NewTokenSecret returns a fresh random token secret and its hash.
func NewTokenSecret() (secret string, hash []byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	secret = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, HashToken(secret)
}

// HashToken returns the SHA-256 of a token secret: secrets are 256 random
// bits, so a fast hash is enough, and lookups stay one indexed query.
func HashToken(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// secretPrefix is what is kept of a secret to tell tokens apart.
func secretPrefix(secret string) string {
	if len(secret) < len(TokenPrefix)+6 {
		return secret
	}
	return secret[:len(TokenPrefix)+6]
}

const userCols = `id::text, name, email, labels, version, created_at, updated_at`

func scanUser(row pgx.Row) (rackcloud.User, error) {
	var u rackcloud.User
	err := row.Scan(&u.ID, &u.Name, &u.Email, &u.Labels, &u.Version, &u.CreatedAt, &u.UpdatedAt)
	return u, MapError(err)
}

// CreateUser inserts u.
func CreateUser(ctx context.Context, q Querier, u rackcloud.User) (rackcloud.User, error) {
	return scanUser(q.QueryRow(ctx, `INSERT INTO users (name, email, labels) VALUES ($1, $2, $3) RETURNING `+userCols,
		u.Name, u.Email, labelsOrEmpty(u.Labels)))
}

// GetUser returns the user with id, or rackcloud.ErrNotFound.
func GetUser(ctx context.Context, q Querier, id string) (rackcloud.User, error) {
	if !ValidID(id) {
		return rackcloud.User{}, rackcloud.ErrNotFound
	}
	return scanUser(q.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

// ListUsers lists users.
func ListUsers(ctx context.Context, q Querier, f Filter) ([]rackcloud.User, error) {
	return listRows(ctx, q, listSpec{table: "users", cols: userCols}, f, scanUser)
}

// UpdateUser writes u's email and labels if its version is still u.Version.
func UpdateUser(ctx context.Context, q Querier, u rackcloud.User) (rackcloud.User, error) {
	out, err := scanUser(q.QueryRow(ctx, `UPDATE users SET email = $3, labels = $4, version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND version = $2 RETURNING `+userCols, uuidArg(u.ID), u.Version, u.Email, labelsOrEmpty(u.Labels)))
	if err != nil {
		return out, versionError(ctx, q, "users", u.ID, err)
	}
	return out, nil
}

// DeleteUser deletes a user and all its tokens.
func DeleteUser(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "users", id, version)
}

// TokenRecord is a stored token: never its secret.
type TokenRecord struct {
	rackcloud.Token
	// Prefix is the secret's first characters.
	Prefix string
	// UserName is the name of the token's user.
	UserName string
}

const tokenCols = `t.id::text, t.user_id::text, u.name, t.name, t.role, t.prefix, t.expires_at,
	ARRAY(SELECT tp.project_id::text FROM token_projects tp WHERE tp.token_id = t.id ORDER BY 1),
	t.labels, t.version, t.created_at, t.updated_at, coalesce(t.parent_id::text, '')`

func scanToken(row pgx.Row) (TokenRecord, error) {
	var t TokenRecord
	err := row.Scan(&t.ID, &t.UserID, &t.UserName, &t.Name, &t.Role, &t.Prefix, &t.ExpiresAt, &t.ProjectIDs, &t.Labels,
		&t.Version, &t.CreatedAt, &t.UpdatedAt, &t.ParentID)
	if t.ProjectIDs == nil {
		t.ProjectIDs = []string{}
	}
	return t, MapError(err)
}

// CreateToken inserts t with a fresh secret and returns the record and the
// secret, which is not stored and cannot be read again. A t.ParentID (the
// token that mints this one) caps the new token's expiry at the parent's
// (the database does it), and revoking the parent revokes this token.
func CreateToken(ctx context.Context, q Querier, t rackcloud.Token) (TokenRecord, string, error) {
	secret, hash := NewTokenSecret()
	var parent *string
	if t.ParentID != "" {
		parent = &t.ParentID
	}
	var id string
	err := q.QueryRow(ctx, `INSERT INTO tokens (user_id, name, role, hash, prefix, expires_at, labels, parent_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id::text`,
		t.UserID, t.Name, string(t.Role), hash, secretPrefix(secret), t.ExpiresAt, labelsOrEmpty(t.Labels), parent).Scan(&id)
	if err != nil {
		return TokenRecord{}, "", MapError(err)
	}
	for _, p := range t.ProjectIDs {
		if _, err := q.Exec(ctx, `INSERT INTO token_projects (token_id, project_id) VALUES ($1, $2)`, id, p); err != nil {
			return TokenRecord{}, "", fmt.Errorf("project %s: %w", p, MapError(err))
		}
	}
	rec, err := GetToken(ctx, q, id)
	return rec, secret, err
}

// GetToken returns the token with id, or rackcloud.ErrNotFound.
func GetToken(ctx context.Context, q Querier, id string) (TokenRecord, error) {
	if !ValidID(id) {
		return TokenRecord{}, rackcloud.ErrNotFound
	}
	return scanToken(q.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1`, id))
}

// ListTokens lists tokens; Filter.Parent is a user.
func ListTokens(ctx context.Context, q Querier, f Filter) ([]TokenRecord, error) {
	return listRows(ctx, q, listSpec{table: "tokens", from: "tokens t JOIN users u ON u.id = t.user_id", alias: "t",
		cols: tokenCols, parentCol: "user_id"}, f, scanToken)
}

// DeleteToken revokes a token and, with it, every token minted from it
// (transitively).
func DeleteToken(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "tokens", id, version)
}

// CountTokenDescendants counts the tokens minted from id, transitively:
// those that revoking id revokes too.
func CountTokenDescendants(ctx context.Context, q Querier, id string) (int, error) {
	if !ValidID(id) {
		return 0, nil
	}
	var n int
	err := q.QueryRow(ctx, `WITH RECURSIVE d AS (
			SELECT id FROM tokens WHERE parent_id = $1::uuid
			UNION SELECT t.id FROM tokens t JOIN d ON t.parent_id = d.id)
		SELECT count(*) FROM d`, id).Scan(&n)
	return n, MapError(err)
}

// ErrBadToken is returned by Authenticate for an unknown or expired
// token. It is not a rackcloud.ErrNotFound: callers answer 401.
var ErrBadToken = errors.New("unknown or expired token")

// Authenticate returns the token whose secret is given, or ErrBadToken.
func Authenticate(ctx context.Context, q Querier, secret string, now time.Time) (TokenRecord, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 128 {
		return TokenRecord{}, ErrBadToken
	}
	rec, err := scanToken(q.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens t JOIN users u ON u.id = t.user_id
		WHERE t.hash = $1`, HashToken(secret)))
	if errors.Is(err, rackcloud.ErrNotFound) {
		return TokenRecord{}, ErrBadToken
	}
	if err != nil {
		return TokenRecord{}, err
	}
	if rec.ExpiresAt != nil && !now.Before(*rec.ExpiresAt) {
		return TokenRecord{}, ErrBadToken
	}
	return rec, nil
}

// BootstrapOptions says what Bootstrap creates.
type BootstrapOptions struct {
	// User is the admin user's name; DefaultBootstrapUser when empty.
	User string
	// TokenName names the new token; "bootstrap-<unix time>" when empty.
	TokenName string
	// Force creates a token even when an admin token already exists.
	Force bool
}

// DefaultBootstrapUser is the user Bootstrap creates.
const DefaultBootstrapUser = "admin"

// Bootstrap creates the first admin token without any other credential:
// it makes the admin user if needed and returns a new admin token's
// secret, which is shown only once, and writes an audit event; pass a
// transaction to make the two one change. Unless opts.Force, it refuses with
// rackcloud.ErrConflict once any admin token exists, so that running it
// again on a live system does not hand out admin rights silently.
func Bootstrap(ctx context.Context, q Querier, opts BootstrapOptions) (TokenRecord, string, error) {
	if opts.User == "" {
		opts.User = DefaultBootstrapUser
	}
	if opts.TokenName == "" {
		opts.TokenName = fmt.Sprintf("bootstrap-%d", time.Now().UnixNano())
	}
	if !opts.Force {
		var n int
		if err := q.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE role = 'admin'`).Scan(&n); err != nil {
			return TokenRecord{}, "", MapError(err)
		}
		if n > 0 {
			return TokenRecord{}, "", fmt.Errorf("%w: an admin token already exists (use force to add another)", rackcloud.ErrConflict)
		}
	}
	var userID string
	err := q.QueryRow(ctx, `INSERT INTO users (name) VALUES ($1)
		ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id::text`, opts.User).Scan(&userID)
	if err != nil {
		return TokenRecord{}, "", fmt.Errorf("bootstrap user %s: %w", opts.User, MapError(err))
	}
	rec, secret, err := CreateToken(ctx, q, rackcloud.Token{Meta: rackcloud.Meta{Name: opts.TokenName}, UserID: userID, Role: rackcloud.RoleAdmin})
	if err != nil {
		return rec, "", err
	}
	err = WriteAudit(ctx, q, AuditRecord{AuditEvent: rackcloud.AuditEvent{Actor: "system:bootstrap", Action: "bootstrapToken",
		Target: "token/" + rec.ID, Outcome: OutcomeSuccess}, Detail: "admin token for user " + opts.User})
	return rec, secret, err
}
