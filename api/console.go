package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/rackcloud/rackcloud"
)

// Consoles reads guests' console output from their hosts
// (*vmctl.Controller).
type Consoles interface {
	Console(ctx context.Context, guestID string, max int) (text string, truncated bool, err error)
}

type guestConsoleInput struct {
	IDParam
	Bytes int `query:"bytes" minimum:"1" maximum:"1048576" default:"65536" doc:"At most this many bytes, the newest."`
}

type guestConsoleOutput struct {
	Body struct {
		Text      string `json:"text" doc:"What the guest wrote on its console since it last started: a VM's serial console, a container's stdout and stderr."`
		Truncated bool   `json:"truncated" doc:"Older output was left out (ask for more bytes)."`
	}
}

func registerConsole(a *API) {
	c := guestsCrud(a)
	register(a, huma.Operation{
		OperationID: "getGuestConsole", Method: http.MethodGet, Path: "/v1/guests/{id}/console", Summary: "A guest's console output",
		Description: "Reads the newest console output of the guest from its host's daemon: the serial console log of a VM (libvirt), the output of a container (Docker). 502 when the host's daemon does not answer.",
		Tags:        []string{"Guests"}, Errors: []int{http.StatusNotFound, http.StatusConflict, http.StatusBadGateway},
	}, writers, func(ctx context.Context, in *guestConsoleInput) (*guestConsoleOutput, error) {
		if a.deps.Consoles == nil {
			return nil, huma.Error503ServiceUnavailable("this server runs no guest drivers")
		}
		if _, err := c.visible(ctx, a.deps.Pool, in.ID); err != nil {
			return nil, a.problem(err)
		}
		text, cut, err := a.deps.Consoles.Console(ctx, in.ID, in.Bytes)
		switch {
		case err == nil:
		case errors.Is(err, rackcloud.ErrNotFound), errors.Is(err, rackcloud.ErrConflict), errors.Is(err, rackcloud.ErrInvalid),
			errors.Is(err, context.Canceled):
			return nil, a.problem(err)
		default:
			return nil, huma.Error502BadGateway("the guest's host did not answer: " + err.Error())
		}
		out := &guestConsoleOutput{}
		out.Body.Text, out.Body.Truncated = text, cut
		return out, nil
	})
}
