package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

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

func regionsCrud(a *API) *crud[rackcloud.Region, Region] {
	return &crud[rackcloud.Region, Region]{a: a, tag: "Regions", path: "/v1/regions", kind: "region", opName: "Region",
		plural: "Regions", read: anyRole, write: staffOnly, get: store.GetRegion,
		list: func(ctx context.Context, q store.Querier, f store.Filter) ([]rackcloud.Region, error) {
			return store.ListRegionsFiltered(ctx, q, f)
		},
		del: store.DeleteRegion, meta: func(r rackcloud.Region) rackcloud.Meta { return r.Meta }, out: regionOut,
		delDoc: "Deletes a region that has no zones (409 otherwise)."}
}

func registerRegions(a *API) {
	c := regionsCrud(a)
	c.registerAll("Lists regions in name order, keyset-paginated.")

	register(a, huma.Operation{
		OperationID: "createRegion", Method: http.MethodPost, Path: "/v1/regions",
		Summary: "Create a region", Tags: []string{c.tag}, DefaultStatus: http.StatusCreated,
		Errors: []int{http.StatusConflict},
	}, staffOnly, func(ctx context.Context, in *struct{ Body RegionBody }) (*itemOutput[Region], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return c.created(ctx, a.newChange(ctx, "createRegion", "region/"+in.Body.Name), func(tx pgx.Tx) (rackcloud.Region, error) {
			return store.CreateRegion(ctx, tx, rackcloud.Region{
				Meta:        rackcloud.Meta{Name: in.Body.Name, Labels: in.Body.Labels},
				Description: in.Body.Description,
			})
		})
	})

	register(a, huma.Operation{
		OperationID: "updateRegion", Method: http.MethodPatch, Path: "/v1/regions/{id}",
		Summary: "Update a region", Description: "Changes the description and labels. Send If-Match with the ETag you read to avoid overwriting someone else's change (412 when stale).",
		Tags: []string{c.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, staffOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body RegionUpdateBody
	}) (*itemOutput[Region], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return c.patch(ctx, "updateRegion", in.ID, in.IfMatch, func(_ pgx.Tx, r *rackcloud.Region) error {
			if in.Body.Description != nil {
				r.Description = *in.Body.Description
			}
			if in.Body.Labels != nil {
				r.Labels = in.Body.Labels
			}
			return nil
		}, store.UpdateRegion)
	})
}
