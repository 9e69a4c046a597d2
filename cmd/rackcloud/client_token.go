package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

func init() {
	register(command{name: "token", summary: "create, list and revoke tokens; bootstrap the first admin token", run: dispatch("token", []verb{
		{"list", "", "list tokens (never their secrets)", listVerb("token", "tokens", []column{{"ID", "id"}, {"NAME", "name"},
			{"USER", "user"}, {"ROLE", "role"}, {"PROJECTS", "project_ids"}, {"PREFIX", "prefix"}, {"EXPIRES", "expires_at"}})},
		{"create", "NAME --role R [--project P]... [--user U] [--ttl 24h]", "create a token and print its secret once", tokenCreate},
		{"revoke", "ID", "revoke a token", deleteVerb("token", "tokens")},
		{"whoami", "", "show the token in use", tokenWhoami},
		{"bootstrap", "--database-url URL [--user admin] [--force]", "create the first admin token straight in the database", tokenBootstrap},
	})})
}

func tokenCreate(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("token", "create", &cf)
	role := fs.String("role", "viewer", "admin, operator, member or viewer")
	var projects listFlag
	fs.Var(&projects, "project", "project the token works in (name or ID, repeatable)")
	user := fs.String("user", "", "the token's user (name or ID; admins only; default: yourself)")
	ttl := fs.Duration("ttl", 0, "lifetime (0: no expiry)")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud token create NAME --role R"); err != nil {
		return err
	}
	body := map[string]any{"name": pos[0], "role": *role}
	if *user != "" {
		id, err := c.resolve(ctx, "users", *user)
		if err != nil {
			return err
		}
		body["user_id"] = id
	}
	var ids []string
	for _, p := range projects {
		id, err := c.resolve(ctx, "projects", p)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if len(ids) > 0 {
		body["project_ids"] = ids
	}
	if *ttl > 0 {
		body["ttl_seconds"] = int64(ttl.Seconds())
	}
	r, err := c.call(ctx, http.MethodPost, "/v1/tokens", body)
	if err != nil {
		return err
	}
	if c.out == "json" {
		return c.printItem(r.body)
	}
	var t struct {
		Secret string `json:"secret"`
		Token  struct {
			ID string `json:"id"`
		} `json:"token"`
	}
	if err := jsonUnmarshal(r.body, &t); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "token %s created; its secret is shown only now:\n", t.Token.ID)
	fmt.Fprintln(stdout, t.Secret)
	return nil
}

func tokenWhoami(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("token", "whoami", &cf)
	c, _, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	r, err := c.call(ctx, http.MethodGet, "/v1/whoami", nil)
	if err != nil {
		return err
	}
	return c.printItem(r.body)
}

// tokenBootstrap creates the first admin token without any credential but
// access to the database: it prints the secret once.
func tokenBootstrap(ctx context.Context, args []string) error {
	fs := newFlagSet("rackcloud token bootstrap", "", "Creates the first admin token straight in the database and prints its secret once.")
	var common commonFlags
	common.bind(fs)
	user := fs.String("user", store.DefaultBootstrapUser, "the admin user (created if missing)")
	name := fs.String("name", "", "the token's name (default bootstrap-<time>)")
	force := fs.Bool("force", false, "create a token even if an admin token already exists")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	pool, err := store.NewPool(ctx, common.databaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	var rec store.TokenRecord
	var secret string
	err = store.InTx(ctx, pool, func(tx pgx.Tx) (err error) {
		rec, secret, err = store.Bootstrap(ctx, tx, store.BootstrapOptions{User: *user, TokenName: *name, Force: *force})
		return err
	})
	if errors.Is(err, rackcloud.ErrConflict) {
		return fmt.Errorf("%w (pass --force to add another admin token)", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "admin token %s (%s) for user %s; its secret is shown only now:\n", rec.ID, rec.Name, *user)
	fmt.Fprintln(stdout, secret)
	return nil
}
