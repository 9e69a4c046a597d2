package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// itemOutput is one resource with its ETag.
type itemOutput[T any] struct {
	ETag     string `header:"ETag" doc:"The resource's version; send it back in If-Match."`
	Location string `header:"Location" doc:"The created resource's URL."`
	Body     T
}

func item[T any](body T, version int64) *itemOutput[T] {
	return &itemOutput[T]{ETag: etag(version), Body: body}
}

// IDParam is a resource ID in the path.
type IDParam struct {
	ID string `path:"id" format:"uuid" doc:"The resource's ID." example:"5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f"`
}

// crud describes a resource for its generic get, list and delete
// operations; creates and updates are registered per resource, on created
// and patch.
type crud[R, T any] struct {
	a       *API
	tag     string // OpenAPI tag ("Hosts")
	path    string // collection path ("/v1/hosts")
	kind    string // singular, for IDs and audit targets ("host")
	opName  string // operation ID stem ("Host" -> getHost, listHosts, deleteHost)
	plural  string // "Hosts"
	read    access
	write   access
	get     func(context.Context, store.Querier, string) (R, error)
	list    func(context.Context, store.Querier, store.Filter) ([]R, error)
	del     func(context.Context, store.Querier, string, int64) error
	meta    func(R) rackcloud.Meta
	out     func(R) T
	project func(R) string // owning project, nil for fleet resources
	// cursor is a row's position in list, for lists not in name order;
	// nil means (name, id).
	cursor   func(R) store.Cursor
	delDoc   string
	noDelete bool
}

// visible returns the resource if p may see it, else rackcloud.ErrNotFound
// (members do not learn that other projects' resources exist).
func (c *crud[R, T]) visible(ctx context.Context, q store.Querier, id string) (R, error) {
	r, err := c.get(ctx, q, id)
	if err != nil {
		return r, notFound(err, c.kind, id)
	}
	if c.project != nil && !principalFrom(ctx).sees(c.project(r)) {
		var zero R
		return zero, notFound(rackcloud.ErrNotFound, c.kind, id)
	}
	return r, nil
}

func (c *crud[R, T]) target(id string) string { return c.kind + "/" + id }

// noun is the resource's name in prose, with its article: "an image".
func (c *crud[R, T]) noun() string {
	n := strings.ReplaceAll(c.kind, "-", " ")
	if strings.ContainsRune("aeio", rune(n[0])) { // "a user"
		return "an " + n
	}
	return "a " + n
}

func (c *crud[R, T]) registerGet() {
	register(c.a, huma.Operation{
		OperationID: "get" + c.opName, Method: http.MethodGet, Path: c.path + "/{id}",
		Summary: "Get " + c.noun(), Tags: []string{c.tag}, Errors: []int{http.StatusNotFound},
	}, c.read, func(ctx context.Context, in *IDParam) (*itemOutput[T], error) {
		r, err := c.visible(ctx, c.a.deps.Pool, in.ID)
		if err != nil {
			return nil, c.a.problem(err)
		}
		return item(c.out(r), c.meta(r).Version), nil
	})
}

// registerList adds the list operation; filter adds the resource's own
// query parameters to the store filter and to the next link.
func registerList[I any, R, T any](c *crud[R, T], doc string, params func(*I) (ListParams, url.Values, func(*store.Filter))) {
	register(c.a, huma.Operation{
		OperationID: "list" + c.plural, Method: http.MethodGet, Path: c.path,
		Summary: "List " + listNoun(c.plural), Description: doc, Tags: []string{c.tag},
	}, c.read, func(ctx context.Context, in *I) (*listOutput[T], error) {
		lp, extra, more := params(in)
		f, err := lp.filter()
		if err != nil {
			return nil, err
		}
		if more != nil {
			more(&f)
		}
		if c.project != nil {
			f.Projects = principalFrom(ctx).projectFilter()
		}
		rows, err := c.list(ctx, c.a.deps.Pool, f)
		if err != nil {
			return nil, c.a.problem(err)
		}
		key := c.cursor
		if key == nil {
			key = func(r R) store.Cursor {
				m := c.meta(r)
				return store.Cursor{Name: m.Name, ID: m.ID}
			}
		}
		return page(c.path, lp, extra, rows, key, c.out), nil
	})
}

type deleteInput struct {
	IDParam
	IfMatch
}

func (c *crud[R, T]) registerDelete() {
	doc := c.delDoc
	if doc == "" {
		doc = "Deletes the " + strings.ReplaceAll(c.kind, "-", " ") + ". Send If-Match with the ETag you read to get 412 instead of deleting a newer version."
	}
	register(c.a, huma.Operation{
		OperationID: "delete" + c.opName, Method: http.MethodDelete, Path: c.path + "/{id}",
		Summary: "Delete " + c.noun(), Description: doc, Tags: []string{c.tag}, DefaultStatus: http.StatusNoContent,
		Errors: []int{http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed},
	}, c.write, func(ctx context.Context, in *deleteInput) (*struct{}, error) {
		ch := c.a.newChange(ctx, "delete"+c.opName, c.target(in.ID))
		return nil, c.a.run(ctx, ch, func(tx pgx.Tx) error {
			r, err := c.visible(ctx, tx, in.ID)
			if err != nil {
				return err
			}
			if c.project != nil {
				ch.project = c.project(r)
			}
			v := c.meta(r).Version
			if err := checkMatch(in.IfMatch, v); err != nil {
				return err
			}
			return notFound(c.del(ctx, tx, in.ID, matchVersion(in.IfMatch, v)), c.kind, in.ID)
		})
	})
}

func (c *crud[R, T]) registerAll(listDoc string) {
	registerList(c, listDoc, func(in *ListParams) (ListParams, url.Values, func(*store.Filter)) { return *in, nil, nil })
	c.registerGet()
	if !c.noDelete {
		c.registerDelete()
	}
}

// listNoun turns "AlertRules" into "alert rules".
func listNoun(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte(' ')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// created runs create in the change's transaction and answers the new
// resource with its ETag and Location. Once it exists, the change's audit
// target (and project) name it by ID.
func (c *crud[R, T]) created(ctx context.Context, ch *change, create func(pgx.Tx) (R, error)) (*itemOutput[T], error) {
	var r R
	err := c.a.run(ctx, ch, func(tx pgx.Tx) (err error) {
		if r, err = create(tx); err != nil {
			return err
		}
		ch.target = c.target(c.meta(r).ID)
		if c.project != nil {
			ch.project = c.project(r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m := c.meta(r)
	out := item(c.out(r), m.Version)
	out.Location = c.path + "/" + m.ID
	return out, nil
}

// patch is an update operation: in one change it reads the resource,
// checks visibility and If-Match, lets apply change it, writes it with the
// version it read, and answers it with its new ETag.
func (c *crud[R, T]) patch(ctx context.Context, action, id string, m IfMatch,
	apply func(pgx.Tx, *R) error, write func(context.Context, store.Querier, R) (R, error)) (*itemOutput[T], error) {
	ch := c.a.newChange(ctx, action, c.target(id))
	var r R
	err := c.a.run(ctx, ch, func(tx pgx.Tx) (err error) {
		if r, err = c.visible(ctx, tx, id); err != nil {
			return err
		}
		if c.project != nil {
			ch.project = c.project(r)
		}
		if err := checkMatch(m, c.meta(r).Version); err != nil {
			return err
		}
		if err := apply(tx, &r); err != nil {
			return err
		}
		r, err = write(ctx, tx, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return item(c.out(r), c.meta(r).Version), nil
}
