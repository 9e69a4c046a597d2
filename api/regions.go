package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/conditional"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// RegionBody is the writable part of a region.
type RegionBody struct {
	Name        string            `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Unique name: lower-case letters, digits and dashes." example:"eu-west"`
	Description string            `json:"description,omitempty" maxLength:"1024" doc:"Free text for operators."`
	Labels      map[string]string `json:"labels,omitempty" doc:"Labels for selection and grouping." example:"{\"tier\":\"gold\"}"`
}

// RegionUpdateBody is what may change on a region.
type RegionUpdateBody struct {
	Description *string           `json:"description,omitempty" maxLength:"1024" doc:"Free text for operators."`
	Labels      map[string]string `json:"labels,omitempty" doc:"Replaces all labels when present."`
}

type regionOutput struct {
	ETag     string `header:"ETag"`
	Location string `header:"Location"`
	Body     rackcloud.Region
}

type regionIDParam struct {
	ID string `path:"id" format:"uuid" doc:"Region ID."`
}

// ListParams are the keyset pagination parameters.
type ListParams struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size."`
	Cursor string `query:"cursor" maxLength:"256" doc:"Opaque cursor from the previous page's next_cursor or Link header."`
}

type regionList struct {
	Link string `header:"Link" doc:"RFC 8288 link to the next page (rel=\"next\")."`
	Body struct {
		Items      []rackcloud.Region `json:"items"`
		NextCursor string             `json:"next_cursor,omitempty"`
	}
}

func registerRegions(a *API) {
	tags := []string{"Regions"}
	huma.Register(a.huma, huma.Operation{
		OperationID: "listRegions", Method: http.MethodGet, Path: "/v1/regions",
		Summary: "List regions", Description: "Lists regions in name order, keyset-paginated.", Tags: tags,
	}, func(ctx context.Context, in *ListParams) (*regionList, error) {
		rs, err := store.ListRegions(ctx, a.deps.Pool, in.Cursor, in.Limit+1)
		if err != nil {
			return nil, a.problem(err)
		}
		out := &regionList{}
		if len(rs) > in.Limit {
			rs = rs[:in.Limit]
			out.Body.NextCursor = rs[len(rs)-1].Name
			out.Link = nextLink("/v1/regions", in.Limit, out.Body.NextCursor)
		}
		out.Body.Items = append([]rackcloud.Region{}, rs...)
		return out, nil
	})

	huma.Register(a.huma, huma.Operation{
		OperationID: "createRegion", Method: http.MethodPost, Path: "/v1/regions",
		Summary: "Create a region", Tags: tags, DefaultStatus: http.StatusCreated,
		Errors: []int{http.StatusConflict, http.StatusUnprocessableEntity},
	}, func(ctx context.Context, in *struct{ Body RegionBody }) (*regionOutput, error) {
		r, err := store.CreateRegion(ctx, a.deps.Pool, rackcloud.Region{
			Meta:        rackcloud.Meta{Name: in.Body.Name, Labels: in.Body.Labels},
			Description: in.Body.Description,
		})
		if err != nil {
			return nil, a.problem(err)
		}
		return &regionOutput{ETag: etag(r.Version), Location: "/v1/regions/" + r.ID, Body: r}, nil
	})

	huma.Register(a.huma, huma.Operation{
		OperationID: "getRegion", Method: http.MethodGet, Path: "/v1/regions/{id}",
		Summary: "Get a region", Tags: tags, Errors: []int{http.StatusNotFound},
	}, func(ctx context.Context, in *regionIDParam) (*regionOutput, error) {
		r, err := store.GetRegion(ctx, a.deps.Pool, in.ID)
		if err != nil {
			return nil, a.problem(err)
		}
		return &regionOutput{ETag: etag(r.Version), Body: r}, nil
	})

	huma.Register(a.huma, huma.Operation{
		OperationID: "updateRegion", Method: http.MethodPatch, Path: "/v1/regions/{id}",
		Summary: "Update a region", Description: "Send If-Match with the ETag you read to avoid overwriting someone else's change (412 when stale).",
		Tags: tags, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed, http.StatusUnprocessableEntity},
	}, func(ctx context.Context, in *struct {
		regionIDParam
		conditional.Params
		Body RegionUpdateBody
	}) (*regionOutput, error) {
		cur, err := store.GetRegion(ctx, a.deps.Pool, in.ID)
		if err != nil {
			return nil, a.problem(err)
		}
		if in.HasConditionalParams() {
			if perr := in.PreconditionFailed(strings.Trim(etag(cur.Version), `"`), cur.UpdatedAt); perr != nil {
				return nil, perr
			}
		}
		if in.Body.Description != nil {
			cur.Description = *in.Body.Description
		}
		if in.Body.Labels != nil {
			cur.Labels = in.Body.Labels
		}
		r, err := store.UpdateRegion(ctx, a.deps.Pool, cur)
		if err != nil {
			return nil, a.precondition(err)
		}
		return &regionOutput{ETag: etag(r.Version), Body: r}, nil
	})

	huma.Register(a.huma, huma.Operation{
		OperationID: "deleteRegion", Method: http.MethodDelete, Path: "/v1/regions/{id}",
		Summary: "Delete a region", Tags: tags, DefaultStatus: http.StatusNoContent,
		Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed, http.StatusConflict},
	}, func(ctx context.Context, in *struct {
		regionIDParam
		conditional.Params
	}) (*struct{}, error) {
		var version int64
		if in.HasConditionalParams() {
			cur, err := store.GetRegion(ctx, a.deps.Pool, in.ID)
			if err != nil {
				return nil, a.problem(err)
			}
			if perr := in.PreconditionFailed(strings.Trim(etag(cur.Version), `"`), cur.UpdatedAt); perr != nil {
				return nil, perr
			}
			version = cur.Version
		}
		if err := store.DeleteRegion(ctx, a.deps.Pool, in.ID, version); err != nil {
			return nil, a.precondition(err)
		}
		return nil, nil
	})
}

// precondition maps a lost optimistic race (the version moved between our
// read and our write) to 412, like a stale If-Match.
func (a *API) precondition(err error) error {
	if errors.Is(err, store.ErrStaleVersion) {
		return huma.Error412PreconditionFailed(err.Error())
	}
	return a.problem(err)
}

func nextLink(path string, limit int, cursor string) string {
	q := url.Values{"limit": {strconv.Itoa(limit)}, "cursor": {cursor}}
	return "<" + path + "?" + q.Encode() + `>; rel="next"`
}
