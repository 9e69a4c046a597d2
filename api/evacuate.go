package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// EvacuateBody is the body of POST /v1/hosts/{id}/evacuate.
type EvacuateBody struct {
	Fenced bool `json:"fenced,omitempty" doc:"The host is fenced (its BMC confirmed power off) and cannot be reached: guests with HA policy restart are recreated elsewhere from their images, the others stay (failed). Without it, every guest is migrated cold off a live host."`
}

type evacuateInput struct {
	IDParam
	Body *EvacuateBody
}

// registerEvacuate adds POST /v1/hosts/{id}/evacuate. Its task's target
// is the host's evacuation, not the host: a host.drain waiting for the
// host's guests to leave holds the host itself.
func registerEvacuate(a *API) {
	register(a, huma.Operation{
		OperationID: "evacuateHost", Method: http.MethodPost, Path: "/v1/hosts/{id}/evacuate", Summary: "Move every guest off a host",
		Description: "Starts a host.evacuate task: each guest on the host gets its own sub-task, so one that cannot move does not keep the others, and the task reports how many moved, failed and were left. " +
			"Live (the default): the host must be draining, in maintenance or failed, and each guest is migrated cold (guest.migrate), keeping its disk and its running or stopped state. " +
			"Fenced (`fenced: true`): the host's BMC must report power off, and no new guest may land on it (a ready host is put in maintenance first); nothing is asked of the host, guests with HA policy restart are re-placed and recreated from their images (guest.recreate), guests with HA policy none stay on the host, failed with the reason. " +
			"A guest no host can take keeps its row, failed, with placement's explanation. 409 when the host may not be evacuated that way, or an evacuation of it is at work.",
		Tags: []string{"Hosts"}, DefaultStatus: http.StatusAccepted, Errors: []int{http.StatusNotFound, http.StatusConflict},
	}, staffOnly, func(ctx context.Context, in *evacuateInput) (*taskAccepted, error) {
		fenced := in.Body != nil && in.Body.Fenced
		ch := a.newChange(ctx, "evacuateHost", "host/"+in.ID+"/evacuate")
		var acc *taskAccepted
		err := a.run(ctx, ch, func(tx pgx.Tx) error {
			h, err := store.GetHost(ctx, tx, in.ID)
			if err != nil {
				return notFound(err, "host", in.ID)
			}
			if err := rackcloud.CanEvacuate(h, fenced); err != nil {
				return err
			}
			info, err := a.submit(ctx, tx, ch, rackcloud.KindHostEvacuate, rackcloud.HostEvacuateParams{HostID: h.ID, Fenced: fenced})
			if err != nil {
				return err
			}
			acc = accepted(info)
			return nil
		})
		return acc, err
	})
}
