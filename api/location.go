package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// ZoneBody creates a zone.
type ZoneBody struct {
	RegionID string            `json:"region_id" format:"uuid" doc:"The region the zone is in."`
	Name     string            `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Name, unique in the region." example:"room-a"`
	Labels   map[string]string `json:"labels,omitempty" doc:"Labels for selection and grouping."`
	// Overcommit sets the zone's ratios (each 0, or from 1 to 64).
	Overcommit *Overcommit `json:"overcommit,omitempty" doc:"Per-resource overcommit ratios the zone's hosts take when theirs are 0: each 0 (none: 1) or from 1 to 64."`
}

// ZoneUpdateBody changes a zone.
type ZoneUpdateBody struct {
	Labels map[string]string `json:"labels,omitempty" doc:"Replaces all labels when present." example:"{\"tier\":\"gold\"}"`
	// Overcommit replaces the zone's ratios when present; the hosts that
	// inherit them are judged by the new capacity (no claim already made
	// is refused).
	Overcommit *Overcommit `json:"overcommit,omitempty" doc:"Replaces the zone's overcommit ratios when present (each 0, or from 1 to 64); claims already made stay, new ones are judged by the new capacity."`
}

// LabelsUpdateBody changes labels.
type LabelsUpdateBody struct {
	Labels map[string]string `json:"labels" doc:"Replaces all labels." example:"{\"tier\":\"gold\"}"`
}

// RackBody creates a rack.
type RackBody struct {
	ZoneID    string            `json:"zone_id" format:"uuid" doc:"The zone the rack is in."`
	Name      string            `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Name, unique in the zone." example:"r1"`
	Positions int               `json:"positions,omitempty" minimum:"1" maximum:"100" doc:"Rack units; 42 when absent."`
	Labels    map[string]string `json:"labels,omitempty" doc:"Labels for selection and grouping."`
}

// RackUpdateBody changes a rack.
type RackUpdateBody struct {
	Positions *int              `json:"positions,omitempty" minimum:"1" maximum:"100" doc:"Rack units."`
	Labels    map[string]string `json:"labels,omitempty" doc:"Replaces all labels when present."`
}

type zoneListParams struct {
	ListParams
	RegionID string `query:"region_id" format:"uuid" doc:"Only zones of this region."`
}

type rackListParams struct {
	ListParams
	ZoneID string `query:"zone_id" format:"uuid" doc:"Only racks of this zone."`
}

func registerLocation(a *API) {
	zones := &crud[rackcloud.Zone, Zone]{a: a, tag: "Zones", path: "/v1/zones", kind: "zone", opName: "Zone", plural: "Zones",
		read: anyRole, write: staffOnly, get: store.GetZone, list: store.ListZones, del: store.DeleteZone,
		meta: func(z rackcloud.Zone) rackcloud.Meta { return z.Meta }, out: zoneOut,
		delDoc: "Deletes a zone that has no racks or guests (409 otherwise)."}
	registerList(zones, "Lists zones in name order, keyset-paginated.", func(in *zoneListParams) (ListParams, url.Values, func(*store.Filter)) {
		return in.ListParams, url.Values{"region_id": {in.RegionID}}, func(f *store.Filter) { f.Parent = in.RegionID }
	})
	zones.registerGet()
	zones.registerDelete()
	register(a, huma.Operation{
		OperationID: "createZone", Method: http.MethodPost, Path: "/v1/zones", Summary: "Create a zone",
		Tags: []string{zones.tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, staffOnly, func(ctx context.Context, in *struct{ Body ZoneBody }) (*itemOutput[Zone], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		z := rackcloud.Zone{Meta: rackcloud.Meta{Name: in.Body.Name, Labels: in.Body.Labels}, RegionID: in.Body.RegionID}
		if o := in.Body.Overcommit; o != nil {
			oc, err := overcommitIn("body.overcommit", *o, rackcloud.MinZoneOvercommit)
			if err != nil {
				return nil, err
			}
			z.Overcommit = oc
		}
		return zones.created(ctx, a.newChange(ctx, "createZone", "zone/"+in.Body.Name), func(tx pgx.Tx) (rackcloud.Zone, error) {
			if _, err := store.GetRegion(ctx, tx, in.Body.RegionID); err != nil {
				return rackcloud.Zone{}, notFoundField(err, "body.region_id", in.Body.RegionID)
			}
			return store.CreateZone(ctx, tx, z)
		})
	})
	register(a, huma.Operation{
		OperationID: "updateZone", Method: http.MethodPatch, Path: "/v1/zones/{id}", Summary: "Update a zone",
		Description: "Changes a zone's labels and overcommit ratios (the ratios its hosts take when theirs are 0).",
		Tags:        []string{zones.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, staffOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body ZoneUpdateBody
	}) (*itemOutput[Zone], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		var oc *rackcloud.Overcommit
		if o := in.Body.Overcommit; o != nil {
			v, err := overcommitIn("body.overcommit", *o, rackcloud.MinZoneOvercommit)
			if err != nil {
				return nil, err
			}
			oc = &v
		}
		return zones.patch(ctx, "updateZone", in.ID, in.IfMatch, func(_ pgx.Tx, z *rackcloud.Zone) error {
			if in.Body.Labels != nil {
				z.Labels = in.Body.Labels
			}
			if oc != nil {
				z.Overcommit = *oc
			}
			return nil
		}, store.UpdateZone)
	})

	racks := &crud[rackcloud.Rack, Rack]{a: a, tag: "Racks", path: "/v1/racks", kind: "rack", opName: "Rack", plural: "Racks",
		read: staffOnly, write: staffOnly, get: store.GetRack, list: store.ListRacks, del: store.DeleteRack,
		meta: func(r rackcloud.Rack) rackcloud.Meta { return r.Meta }, out: rackOut,
		delDoc: "Deletes a rack that holds no hosts (409 otherwise)."}
	registerList(racks, "Lists racks in name order, keyset-paginated.", func(in *rackListParams) (ListParams, url.Values, func(*store.Filter)) {
		return in.ListParams, url.Values{"zone_id": {in.ZoneID}}, func(f *store.Filter) { f.Parent = in.ZoneID }
	})
	racks.registerGet()
	racks.registerDelete()
	register(a, huma.Operation{
		OperationID: "createRack", Method: http.MethodPost, Path: "/v1/racks", Summary: "Create a rack",
		Tags: []string{racks.tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, staffOnly, func(ctx context.Context, in *struct{ Body RackBody }) (*itemOutput[Rack], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		if in.Body.Positions == 0 {
			in.Body.Positions = 42
		}
		return racks.created(ctx, a.newChange(ctx, "createRack", "rack/"+in.Body.Name), func(tx pgx.Tx) (rackcloud.Rack, error) {
			if _, err := store.GetZone(ctx, tx, in.Body.ZoneID); err != nil {
				return rackcloud.Rack{}, notFoundField(err, "body.zone_id", in.Body.ZoneID)
			}
			return store.CreateRack(ctx, tx, rackcloud.Rack{Meta: rackcloud.Meta{Name: in.Body.Name, Labels: in.Body.Labels},
				ZoneID: in.Body.ZoneID, Positions: in.Body.Positions})
		})
	})
	register(a, huma.Operation{
		OperationID: "updateRack", Method: http.MethodPatch, Path: "/v1/racks/{id}", Summary: "Update a rack",
		Tags: []string{racks.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, staffOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body RackUpdateBody
	}) (*itemOutput[Rack], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return racks.patch(ctx, "updateRack", in.ID, in.IfMatch, func(_ pgx.Tx, r *rackcloud.Rack) error {
			if in.Body.Positions != nil {
				r.Positions = *in.Body.Positions
			}
			if in.Body.Labels != nil {
				r.Labels = in.Body.Labels
			}
			return nil
		}, store.UpdateRack)
	})
}

// overcommitIn checks ratios from a body at loc (each 0, or from minimum
// to rackcloud.MaxOvercommit): a 422 naming the field and the ratio
// otherwise.
func overcommitIn(loc string, o Overcommit, minimum float64) (rackcloud.Overcommit, error) {
	oc := rackcloud.Overcommit(o)
	if err := rackcloud.CheckOvercommit(oc, minimum); err != nil {
		return oc, huma.Error422UnprocessableEntity(fmt.Sprintf("an overcommit ratio is 0 (inherit) or from %g to %d", minimum, rackcloud.MaxOvercommit),
			&huma.ErrorDetail{Location: loc, Message: err.Error(), Value: o})
	}
	return oc, nil
}

// notFoundField turns "the referenced resource does not exist" into a 422
// naming the field, instead of a 404 that would say the URL is wrong.
func notFoundField(err error, loc, value string) error {
	if isNotFound(err) {
		return huma.Error422UnprocessableEntity("referenced resource not found", &huma.ErrorDetail{Location: loc, Message: "no such resource", Value: value})
	}
	return err
}
