package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/vmctl"
)

// Placer answers where a guest would go without claiming anything
// (*vmctl.Controller).
type Placer interface {
	DryRun(ctx context.Context, g rackcloud.Guest) (vmctl.Decision, error)
	HostName(id string) string
}

// PlacementAnswer is placement's answer to a dry run.
type PlacementAnswer struct {
	Fits       bool              `json:"fits" doc:"Whether some host fits."`
	HostID     string            `json:"host_id,omitempty" format:"uuid" doc:"The host placement picked."`
	HostName   string            `json:"host_name,omitempty" doc:"Its name."`
	Considered int               `json:"considered" doc:"Hosts looked at."`
	Feasible   int               `json:"feasible" doc:"Hosts that passed every filter."`
	Summary    string            `json:"summary" doc:"One line for people: what each filter removed and the closest miss." example:"12 hosts in zone a; 9 lacked label ssd; 3 lacked 2048 MiB memory after overhead (best had 1536)"`
	Filters    []PlacementFilter `json:"filters" doc:"Each filter in the order applied, with how many hosts it removed."`
	Soft       []string          `json:"soft,omitempty" doc:"Soft constraints the pick breaks."`
}

// PlacementFilter is what one filter did.
type PlacementFilter struct {
	Name    string `json:"name" doc:"The filter." example:"memory"`
	Removed int    `json:"removed" doc:"Hosts it removed."`
	Detail  string `json:"detail,omitempty" doc:"The closest miss, for capacity filters." example:"best had 1536 MiB"`
}

func placementAnswer(p Placer, d vmctl.Decision, fits bool) *PlacementAnswer {
	a := &PlacementAnswer{Fits: fits, Considered: d.Explanation.Considered, Feasible: d.Feasible,
		Summary: d.Explanation.Summary, Soft: d.Soft, Filters: []PlacementFilter{}}
	if fits {
		a.HostID, a.HostName = d.HostID, p.HostName(d.HostID)
	}
	for _, f := range d.Explanation.Filters {
		a.Filters = append(a.Filters, PlacementFilter{Name: f.Name, Removed: f.Removed, Detail: f.Closest})
	}
	return a
}

type guestMigrateInput struct {
	IDParam
	IfMatch
	Body struct {
		HostID string `json:"host_id,omitempty" format:"uuid" doc:"The host to move to; placement picks one when absent."`
	}
}

type guestEventsInput struct {
	IDParam
	After int64 `query:"after" minimum:"0" doc:"Only events after this ID."`
	Limit int   `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"At most this many."`
}

type guestEventsOutput struct {
	Body struct {
		Items []store.GuestEvent `json:"items" doc:"Oldest first."`
	}
}

func registerPlacement(a *API) {
	c := guestsCrud(a)
	register(a, huma.Operation{
		OperationID: "placementDryRun", Method: http.MethodPost, Path: "/v1/placement/dry-run", Summary: "Ask where a guest would go",
		Description: "Runs placement on this replica's snapshot for a guest request (the body of POST /v1/guests) and answers where it would go, or why nothing fits, claiming nothing. The snapshot may lag the database by a moment; a real create is judged by the database.",
		Tags:        []string{"Guests"}, Errors: []int{http.StatusNotFound},
	}, writers, func(ctx context.Context, in *struct{ Body GuestBody }) (*placementOutput, error) {
		if a.deps.Placer == nil {
			return nil, huma.Error503ServiceUnavailable("this server runs no placement")
		}
		g, err := guestFromBody(in.Body)
		if err != nil {
			return nil, err
		}
		if !principalFrom(ctx).sees(in.Body.ProjectID) {
			return nil, huma.Error403Forbidden("your token does not work in project " + in.Body.ProjectID)
		}
		if err := store.InTx(ctx, a.deps.Pool, func(tx pgx.Tx) error { return checkGuestRefs(ctx, tx, in.Body) }); err != nil {
			return nil, a.problem(err)
		}
		g.ID = store.NewID()
		d, err := a.deps.Placer.DryRun(ctx, g)
		var nf *vmctl.NoFitError
		if errors.As(err, &nf) {
			d.Explanation = nf.Explanation
			return &placementOutput{Body: *placementAnswer(a.deps.Placer, d, false)}, nil
		}
		if err != nil {
			return nil, a.problem(err)
		}
		return &placementOutput{Body: *placementAnswer(a.deps.Placer, d, true)}, nil
	})

	register(a, huma.Operation{
		OperationID: "migrateGuest", Method: http.MethodPost, Path: "/v1/guests/{id}/migrate", Summary: "Move a guest to another host",
		Description: "Starts a guest.migrate task: the guest is stopped, its claim moves to the new host (judged by the database), its disk is copied (VMs) or its image prepared (containers), it is started there if it was running, and removed from the old host.",
		Tags:        []string{"Guests"}, DefaultStatus: http.StatusAccepted,
		Errors: []int{http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed},
	}, writers, func(ctx context.Context, in *guestMigrateInput) (*taskAccepted, error) {
		ch := a.newChange(ctx, "migrateGuest", c.target(in.ID))
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
			if g.Kind == rackcloud.GuestBareMetal {
				return huma.Error409Conflict("a bare-metal guest is its host's disk and power: it cannot move (delete it and create another)")
			}
			if g.HostID == "" || (g.State != rackcloud.GuestRunning && g.State != rackcloud.GuestStopped) {
				return huma.Error409Conflict("only a running or stopped guest on a host can move; this one is " + string(g.State))
			}
			if in.Body.HostID != "" {
				if _, err := store.GetHost(ctx, tx, in.Body.HostID); err != nil {
					return notFoundField(err, "body.host_id", in.Body.HostID)
				}
			}
			info, err := a.submit(ctx, tx, ch, rackcloud.KindGuestMigrate,
				rackcloud.GuestMigrateParams{GuestID: g.ID, HostID: in.Body.HostID})
			if err != nil {
				return err
			}
			acc = accepted(info)
			return nil
		})
		return acc, err
	})

	register(a, huma.Operation{
		OperationID: "listGuestEvents", Method: http.MethodGet, Path: "/v1/guests/{id}/events", Summary: "A guest's timeline",
		Description: "What was done to the guest (placed, moved) and what its host was seen to do (observed state changes: crashed, missing, back running), oldest first.",
		Tags:        []string{"Guests"}, Errors: []int{http.StatusNotFound},
	}, anyRole, func(ctx context.Context, in *guestEventsInput) (*guestEventsOutput, error) {
		if _, err := c.visible(ctx, a.deps.Pool, in.ID); err != nil {
			return nil, a.problem(err)
		}
		evs, err := store.ListGuestEvents(ctx, a.deps.Pool, in.ID, in.After, in.Limit)
		if err != nil {
			return nil, a.problem(err)
		}
		out := &guestEventsOutput{}
		out.Body.Items = evs
		if out.Body.Items == nil {
			out.Body.Items = []store.GuestEvent{}
		}
		return out, nil
	})
}

type placementOutput struct{ Body PlacementAnswer }
