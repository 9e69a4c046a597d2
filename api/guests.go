package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/vmctl"
)

// Task kinds the guest operations submit (rackcloud.KindGuest*); vmctl
// registers their steps.
const (
	KindGuestCreate = rackcloud.KindGuestCreate
	KindGuestDelete = rackcloud.KindGuestDelete
	KindGuestStart  = rackcloud.KindGuestStart
	KindGuestStop   = rackcloud.KindGuestStop
	KindGuestReboot = rackcloud.KindGuestReboot
)

// GuestBody asks for a guest.
type GuestBody struct {
	ProjectID        string            `json:"project_id" format:"uuid" doc:"The project that owns the guest; its quota must hold the flavor."`
	Name             string            `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Name, unique in the project." example:"web-1"`
	Kind             string            `json:"kind" enum:"vm,container,bm" doc:"What the guest is."`
	Flavor           Flavor            `json:"flavor" doc:"The guest's size."`
	ImageID          string            `json:"image_id" format:"uuid" doc:"The image to run."`
	ZoneID           string            `json:"zone_id,omitempty" format:"uuid" doc:"Run in this zone."`
	Selector         map[string]string `json:"selector,omitempty" doc:"Host labels the host must have." example:"{\"ssd\":\"true\"}"`
	PlacementGroupID string            `json:"placement_group_id,omitempty" format:"uuid" doc:"A placement group of the same project."`
	HA               string            `json:"ha,omitempty" enum:"none,restart" doc:"What to do when the host dies; none when absent."`
	Labels           map[string]string `json:"labels,omitempty" doc:"Labels for selection and grouping."`
	RackID           string            `json:"rack_id,omitempty" format:"uuid" doc:"Run in this rack."`
	HostID           string            `json:"host_id,omitempty" format:"uuid" doc:"Run on this host only (exact placement); placement then says why it does not fit, if it does not."`
	Constraints      []string          `json:"constraints,omitempty" maxItems:"32" doc:"Label expressions the host's labels must all meet: key (exists), !key (absent), key=v, key!=v, key in (a,b), key notin (a,b)." example:"[\"ssd\", \"!spot\", \"tier in (gold,silver)\"]"`
	Strategy         string            `json:"strategy,omitempty" enum:"binpack,spread" doc:"Pack guests onto few hosts (binpack, the default) or spread them out."`
}

// GuestUpdateBody changes a guest's HA policy and labels.
type GuestUpdateBody struct {
	HA     *string           `json:"ha,omitempty" enum:"none,restart" doc:"What to do when the host dies."`
	Labels map[string]string `json:"labels,omitempty" doc:"Replaces all labels when present."`
}

// PlacementGroupBody creates a placement group.
type PlacementGroupBody struct {
	ProjectID string            `json:"project_id" format:"uuid" doc:"The owning project."`
	Name      string            `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Name, unique in the project." example:"db-spread"`
	Policy    string            `json:"policy" enum:"affinity,anti-affinity" doc:"Together or apart."`
	Hard      bool              `json:"hard,omitempty" doc:"Refuse placements that break the policy (else only weigh against them)."`
	Scope     string            `json:"scope,omitempty" enum:"host,rack,zone" doc:"The failure domain the policy works over; host when absent."`
	Labels    map[string]string `json:"labels,omitempty" doc:"Labels for selection and grouping."`
	// MaxPerScope and Weight tune the policy.
	MaxPerScope int     `json:"max_per_scope,omitempty" minimum:"0" maximum:"10000" doc:"Anti-affinity: how many of the group's guests one host, rack or zone may hold (1 when absent)."`
	Weight      float64 `json:"weight,omitempty" minimum:"0" maximum:"100" doc:"Soft groups: how strongly the policy weighs against the other scores (1 when absent)."`
}

type guestListParams struct {
	ListParams
	State     string `query:"state" enum:"pending,creating,running,stopped,deleting,failed" doc:"Only guests in this state."`
	ProjectID string `query:"project_id" format:"uuid" doc:"Only guests of this project."`
}

type projectListParams struct {
	ListParams
	ProjectID string `query:"project_id" format:"uuid" doc:"Only groups of this project."`
}

type guestDeleteInput struct {
	IDParam
	IfMatch
}

func guestsCrud(a *API) *crud[rackcloud.Guest, Guest] {
	return &crud[rackcloud.Guest, Guest]{a: a, tag: "Guests", path: "/v1/guests", kind: "guest", opName: "Guest", plural: "Guests",
		read: anyRole, write: writers, get: store.GetGuest, list: store.ListGuests,
		meta: func(g rackcloud.Guest) rackcloud.Meta { return g.Meta }, out: guestOut,
		project: func(g rackcloud.Guest) string { return g.ProjectID }}
}

func registerGuests(a *API) {
	c := guestsCrud(a)
	registerList(c, "Lists guests in name order, keyset-paginated, by state, project and labels. Members and viewers see their projects' guests only.",
		func(in *guestListParams) (ListParams, url.Values, func(*store.Filter)) {
			return in.ListParams, url.Values{"state": {in.State}, "project_id": {in.ProjectID}}, func(f *store.Filter) {
				f.State, f.Parent = in.State, in.ProjectID
			}
		})
	c.registerGet()

	register(a, huma.Operation{
		OperationID: "createGuest", Method: http.MethodPost, Path: "/v1/guests", Summary: "Create a guest",
		Description: "Records the guest (state pending), charges its flavor to the project's quota, and starts a guest.create task that places, builds and starts it. Answers 202 with the task; the guest is the task's target.",
		Tags:        []string{c.tag}, DefaultStatus: http.StatusAccepted, Errors: []int{http.StatusConflict, http.StatusNotFound},
	}, writers, func(ctx context.Context, in *struct{ Body GuestBody }) (*taskAccepted, error) {
		b := in.Body
		if err := checkLabels("body.labels", b.Labels); err != nil {
			return nil, err
		}
		g, err := guestFromBody(b)
		if err != nil {
			return nil, err
		}
		p := principalFrom(ctx)
		ch := a.newChange(ctx, "createGuest", "guest/"+b.Name)
		ch.project = b.ProjectID
		if !p.sees(b.ProjectID) {
			// Not 404: the project is named in the body, not the URL.
			a.auditAsync(ctx, p, ch.action, ch.target, "", store.OutcomeDenied, "not a member of project "+b.ProjectID)
			return nil, huma.Error403Forbidden("your token does not work in project " + b.ProjectID)
		}
		// The guest's ID is made first so that the task and the audit
		// event can be written before the guest: its insert locks the
		// project's quota row until commit.
		id := store.NewID()
		ch.target = c.target(id)
		var acc *taskAccepted
		err = a.run(ctx, ch, func(tx pgx.Tx) error {
			if err := checkGuestRefs(ctx, tx, b); err != nil {
				return err
			}
			info, err := a.submit(ctx, tx, ch, KindGuestCreate, rackcloud.GuestTaskParams{GuestID: id})
			if err != nil {
				return err
			}
			if err := a.auditNow(ctx, tx, ch); err != nil {
				return err
			}
			g.ID = id
			if _, err := store.CreateGuest(ctx, tx, g); err != nil {
				return err
			}
			acc = accepted(info)
			return nil
		})
		return acc, err
	})

	register(a, huma.Operation{
		OperationID: "updateGuest", Method: http.MethodPatch, Path: "/v1/guests/{id}", Summary: "Update a guest",
		Description: "Changes the HA policy and labels.",
		Tags:        []string{c.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, writers, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body GuestUpdateBody
	}) (*itemOutput[Guest], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return c.patch(ctx, "updateGuest", in.ID, in.IfMatch, func(_ pgx.Tx, g *rackcloud.Guest) error {
			if in.Body.HA != nil {
				g.HA = rackcloud.HAPolicy(*in.Body.HA)
			}
			if in.Body.Labels != nil {
				g.Labels = in.Body.Labels
			}
			return nil
		}, store.UpdateGuest)
	})

	guestTask := func(opID, method, path, summary, doc, kind string, status rackcloud.GuestState) {
		register(a, huma.Operation{
			OperationID: opID, Method: method, Path: path, Summary: summary, Description: doc,
			Tags: []string{c.tag}, DefaultStatus: http.StatusAccepted,
			Errors: []int{http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed},
		}, writers, func(ctx context.Context, in *guestDeleteInput) (*taskAccepted, error) {
			ch := a.newChange(ctx, opID, c.target(in.ID))
			var acc *taskAccepted
			err := a.run(ctx, ch, func(tx pgx.Tx) error {
				g, err := c.visible(ctx, tx, in.ID)
				if err != nil {
					return err
				}
				ch.project = g.ProjectID
				if err := checkMatch(in.IfMatch, g.Version); err != nil {
					return err
				}
				info, err := a.submit(ctx, tx, ch, kind, rackcloud.GuestTaskParams{GuestID: g.ID})
				if err != nil {
					return err
				}
				if status != "" {
					g.State = status
					if _, err := store.UpdateGuest(ctx, tx, g); err != nil {
						return err
					}
				}
				acc = accepted(info)
				return nil
			})
			return acc, err
		})
	}
	guestTask("deleteGuest", http.MethodDelete, "/v1/guests/{id}", "Delete a guest",
		"Starts a guest.delete task that stops the guest, frees its disk and host, and removes it; its resources return to the project's quota when it is gone. The guest is marked deleting at once.",
		KindGuestDelete, rackcloud.GuestDeleting)
	guestTask("startGuest", http.MethodPost, "/v1/guests/{id}/start", "Start a guest", "Starts a guest.start task.", KindGuestStart, "")
	guestTask("stopGuest", http.MethodPost, "/v1/guests/{id}/stop", "Stop a guest", "Starts a guest.stop task.", KindGuestStop, "")
	guestTask("rebootGuest", http.MethodPost, "/v1/guests/{id}/reboot", "Reboot a guest", "Starts a guest.reboot task.", KindGuestReboot, "")

	pgs := &crud[rackcloud.PlacementGroup, PlacementGroup]{a: a, tag: "Placement groups", path: "/v1/placement-groups",
		kind: "placement-group", opName: "PlacementGroup", plural: "PlacementGroups", read: anyRole, write: writers,
		get: store.GetPlacementGroup, list: store.ListPlacementGroups, del: store.DeletePlacementGroup,
		meta: func(p rackcloud.PlacementGroup) rackcloud.Meta { return p.Meta }, out: placementGroupOut,
		project: func(p rackcloud.PlacementGroup) string { return p.ProjectID },
		delDoc:  "Deletes a placement group no guest is in (409 otherwise)."}
	registerList(pgs, "Lists placement groups in name order, keyset-paginated.",
		func(in *projectListParams) (ListParams, url.Values, func(*store.Filter)) {
			return in.ListParams, url.Values{"project_id": {in.ProjectID}}, func(f *store.Filter) { f.Parent = in.ProjectID }
		})
	pgs.registerGet()
	pgs.registerDelete()
	register(a, huma.Operation{
		OperationID: "createPlacementGroup", Method: http.MethodPost, Path: "/v1/placement-groups", Summary: "Create a placement group",
		Tags: []string{pgs.tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, writers, func(ctx context.Context, in *struct{ Body PlacementGroupBody }) (*itemOutput[PlacementGroup], error) {
		b := in.Body
		if err := checkLabels("body.labels", b.Labels); err != nil {
			return nil, err
		}
		p := principalFrom(ctx)
		ch := a.newChange(ctx, "createPlacementGroup", "placement-group/"+b.Name)
		ch.project = b.ProjectID
		if !p.sees(b.ProjectID) {
			a.auditAsync(ctx, p, ch.action, ch.target, "", store.OutcomeDenied, "not a member of project "+b.ProjectID)
			return nil, huma.Error403Forbidden("your token does not work in project " + b.ProjectID)
		}
		if b.Scope == "" {
			b.Scope = string(rackcloud.ScopeHost)
		}
		return pgs.created(ctx, ch, func(tx pgx.Tx) (rackcloud.PlacementGroup, error) {
			if _, err := store.GetProject(ctx, tx, b.ProjectID); err != nil {
				return rackcloud.PlacementGroup{}, notFoundField(err, "body.project_id", b.ProjectID)
			}
			return store.CreatePlacementGroup(ctx, tx, rackcloud.PlacementGroup{Meta: rackcloud.Meta{Name: b.Name, Labels: b.Labels},
				ProjectID: b.ProjectID, Policy: rackcloud.PlacementPolicy(b.Policy), Hard: b.Hard, Scope: rackcloud.PlacementScope(b.Scope),
				MaxPerScope: b.MaxPerScope, Weight: b.Weight})
		})
	})
}

// guestFromBody checks a guest request that needs no database.
func guestFromBody(b GuestBody) (rackcloud.Guest, error) {
	if err := checkLabels("body.labels", b.Labels); err != nil {
		return rackcloud.Guest{}, err
	}
	if err := checkLabels("body.selector", b.Selector); err != nil {
		return rackcloud.Guest{}, err
	}
	for i, c := range b.Constraints {
		if _, err := vmctl.ParseLabelExpr(c); err != nil {
			return rackcloud.Guest{}, huma.Error422UnprocessableEntity("bad label expression",
				&huma.ErrorDetail{Location: "body.constraints[" + strconv.Itoa(i) + "]", Message: err.Error(), Value: c})
		}
	}
	if b.HA == "" {
		b.HA = string(rackcloud.HANone)
	}
	if b.Strategy == "" {
		b.Strategy = string(rackcloud.Binpack)
	}
	return rackcloud.Guest{
		Meta: rackcloud.Meta{Name: b.Name, Labels: b.Labels}, ProjectID: b.ProjectID, Kind: rackcloud.GuestKind(b.Kind),
		Flavor:  rackcloud.Resources{CPUCores: b.Flavor.VCPU, MemoryMiB: b.Flavor.MemoryMiB, DiskGiB: b.Flavor.DiskGiB},
		ImageID: b.ImageID, ZoneID: b.ZoneID, Selector: b.Selector, PlacementGroupID: b.PlacementGroupID,
		HA: rackcloud.HAPolicy(b.HA), RackID: b.RackID, WantHostID: b.HostID, Constraints: b.Constraints,
		Strategy: rackcloud.PlacementStrategy(b.Strategy)}, nil
}

// checkGuestRefs checks that what a guest request names exists.
func checkGuestRefs(ctx context.Context, tx pgx.Tx, b GuestBody) error {
	if _, err := store.GetProject(ctx, tx, b.ProjectID); err != nil {
		return notFoundField(err, "body.project_id", b.ProjectID)
	}
	img, err := store.GetImage(ctx, tx, b.ImageID)
	if err != nil {
		return notFoundField(err, "body.image_id", b.ImageID)
	}
	want := map[string][]rackcloud.ImageFormat{
		string(rackcloud.GuestVM):        {rackcloud.FormatRaw, rackcloud.FormatRawZstd, rackcloud.FormatQCOW2},
		string(rackcloud.GuestContainer): {rackcloud.FormatDockerArchive},
		string(rackcloud.GuestBareMetal): {rackcloud.FormatRaw, rackcloud.FormatRawZstd},
	}[b.Kind]
	if len(want) > 0 && !slices.Contains(want, img.Format) {
		return huma.Error422UnprocessableEntity("the image cannot run as this kind of guest", &huma.ErrorDetail{
			Location: "body.image_id", Message: fmt.Sprintf("image %s is %s; a %s guest needs %v", img.Name, img.Format, b.Kind, want),
			Value: b.ImageID})
	}
	if b.Kind == string(rackcloud.GuestBareMetal) {
		// The installer writes it on a bm host's disk: it must be made
		// for bm hosts and say how large the disk it holds is.
		if !slices.Contains(img.Roles, rackcloud.RoleBareMetal) || img.Size <= 0 {
			return huma.Error422UnprocessableEntity("the image cannot be installed on a bare-metal host", &huma.ErrorDetail{
				Location: "body.image_id", Message: fmt.Sprintf("image %s serves roles %v with size %d; a bm guest needs an image for role bm with its size set",
					img.Name, roleNames(img.Roles), img.Size), Value: b.ImageID})
		}
	}
	if b.ZoneID != "" {
		if _, err := store.GetZone(ctx, tx, b.ZoneID); err != nil {
			return notFoundField(err, "body.zone_id", b.ZoneID)
		}
	}
	if b.RackID != "" {
		if _, err := store.GetRack(ctx, tx, b.RackID); err != nil {
			return notFoundField(err, "body.rack_id", b.RackID)
		}
	}
	if b.HostID != "" {
		if _, err := store.GetHost(ctx, tx, b.HostID); err != nil {
			return notFoundField(err, "body.host_id", b.HostID)
		}
	}
	if b.PlacementGroupID != "" {
		pg, err := store.GetPlacementGroup(ctx, tx, b.PlacementGroupID)
		if err != nil || pg.ProjectID != b.ProjectID {
			return notFoundField(rackcloud.ErrNotFound, "body.placement_group_id", b.PlacementGroupID)
		}
	}
	return nil
}
