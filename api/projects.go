package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// ProjectBody creates a project.
type ProjectBody struct {
	Name        string            `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Unique name." example:"payments"`
	Description string            `json:"description,omitempty" maxLength:"1024" doc:"Free text."`
	Labels      map[string]string `json:"labels,omitempty" doc:"Labels for selection and grouping."`
}

// ProjectUpdateBody changes a project.
type ProjectUpdateBody struct {
	Description *string           `json:"description,omitempty" maxLength:"1024" doc:"Free text."`
	Labels      map[string]string `json:"labels,omitempty" doc:"Replaces all labels when present."`
}

// QuotaBody sets what is reserved for a project.
type QuotaBody struct {
	Reserved QuotaAmounts `json:"reserved" doc:"What to reserve for the project. Reserving less than the project uses is refused."`
}

type quotaOutput struct {
	ETag string `header:"ETag" doc:"The quota's version; send it back in If-Match."`
	Body Quota
}

func registerProjects(a *API) {
	c := &crud[rackcloud.Project, Project]{a: a, tag: "Projects", path: "/v1/projects", kind: "project", opName: "Project",
		plural: "Projects", read: anyRole, write: adminOnly, get: store.GetProject, list: store.ListProjects,
		del: store.DeleteProject, meta: func(p rackcloud.Project) rackcloud.Meta { return p.Meta }, out: projectOut,
		project: func(p rackcloud.Project) string { return p.ID },
		delDoc:  "Deletes a project that owns no guests or placement groups (409 otherwise); its tokens lose it."}
	c.registerAll("Lists projects in name order, keyset-paginated. Members and viewers see their token's projects.")

	register(a, huma.Operation{
		OperationID: "createProject", Method: http.MethodPost, Path: "/v1/projects", Summary: "Create a project",
		Description: "Creates a project with an empty quota: set its quota before its members create guests.",
		Tags:        []string{c.tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, adminOnly, func(ctx context.Context, in *struct{ Body ProjectBody }) (*itemOutput[Project], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return c.created(ctx, a.newChange(ctx, "createProject", "project/"+in.Body.Name), func(tx pgx.Tx) (rackcloud.Project, error) {
			return store.CreateProject(ctx, tx, rackcloud.Project{Meta: rackcloud.Meta{Name: in.Body.Name, Labels: in.Body.Labels},
				Description: in.Body.Description})
		})
	})

	register(a, huma.Operation{
		OperationID: "updateProject", Method: http.MethodPatch, Path: "/v1/projects/{id}", Summary: "Update a project",
		Tags: []string{c.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, adminOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body ProjectUpdateBody
	}) (*itemOutput[Project], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return c.patch(ctx, "updateProject", in.ID, in.IfMatch, func(_ pgx.Tx, p *rackcloud.Project) error {
			if in.Body.Description != nil {
				p.Description = *in.Body.Description
			}
			if in.Body.Labels != nil {
				p.Labels = in.Body.Labels
			}
			return nil
		}, store.UpdateProject)
	})

	register(a, huma.Operation{
		OperationID: "getProjectQuota", Method: http.MethodGet, Path: "/v1/projects/{id}/quota", Summary: "Get a project's quota",
		Description: "What is reserved for the project and what its guests use.",
		Tags:        []string{c.tag}, Errors: []int{http.StatusNotFound},
	}, anyRole, func(ctx context.Context, in *IDParam) (*quotaOutput, error) {
		if !principalFrom(ctx).sees(in.ID) {
			return nil, a.problem(notFound(rackcloud.ErrNotFound, "project", in.ID))
		}
		q, err := store.GetQuota(ctx, a.deps.Pool, in.ID)
		if err != nil {
			return nil, a.problem(notFound(err, "project", in.ID))
		}
		return &quotaOutput{ETag: etag(q.Version), Body: quotaOut(q)}, nil
	})

	register(a, huma.Operation{
		OperationID: "setProjectQuota", Method: http.MethodPut, Path: "/v1/projects/{id}/quota", Summary: "Set a project's quota",
		Description: "Sets what is reserved for the project. Reserving less than its guests use is refused with a quota-exceeded problem.",
		Tags:        []string{c.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, adminOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body QuotaBody
	}) (*quotaOutput, error) {
		ch := a.newChange(ctx, "setProjectQuota", "project/"+in.ID+"/quota")
		ch.project = in.ID
		var q store.QuotaRecord
		err := a.run(ctx, ch, func(tx pgx.Tx) (err error) {
			cur, err := store.GetQuota(ctx, tx, in.ID)
			if err != nil {
				return notFound(err, "project", in.ID)
			}
			if err := checkMatch(in.IfMatch, cur.Version); err != nil {
				return err
			}
			r := in.Body.Reserved
			q, err = store.SetQuota(ctx, tx, in.ID, cur.Version,
				rackcloud.Resources{CPUCores: r.VCPU, MemoryMiB: r.MemoryMiB, DiskGiB: r.DiskGiB}, r.Hosts)
			return err
		})
		if err != nil {
			return nil, err
		}
		return &quotaOutput{ETag: etag(q.Version), Body: quotaOut(q)}, nil
	})
}
