package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/store"
)

// InstallImage is the image an installer writes.
type InstallImage struct {
	ID       string `json:"id" format:"uuid" doc:"The image's ID."`
	Name     string `json:"name" doc:"The image's name."`
	URL      string `json:"url" doc:"Where to download it (HTTP Range is used to resume)."`
	Checksum string `json:"checksum" doc:"sha256:<hex> of the disk it holds (what is read back after writing)."`
	Size     int64  `json:"size" doc:"Bytes of disk it holds."`
	Format   string `json:"format" enum:"raw,raw+zstd" doc:"How it is encoded."`
}

// InstallPlan is what the installer of a provisioning host needs: the
// image, and the host's configuration to write next to it.
type InstallPlan struct {
	HostID string            `json:"host_id" format:"uuid" doc:"The host's ID."`
	TaskID string            `json:"task_id" format:"uuid" doc:"The host.provision task installing it."`
	Image  InstallImage      `json:"image" doc:"The image to write."`
	Config hostconfig.Config `json:"config" doc:"The host's configuration (identity, token, TLS key): the installer writes it into the image's configuration partition."`
}

func registerInstalls(a *API) {
	register(a, huma.Operation{
		OperationID: "getInstallPlan", Method: http.MethodGet, Path: "/v1/boot/installs/{mac}", Summary: "Get a provisioning host's install plan",
		Description: "Tells the boot service what the installer of the provisioning host that owns the MAC writes: the image, and the host's configuration, " +
			"its token and TLS key included (so it is never cached). 404 unless the host is provisioning.",
		Tags: []string{"Boot"}, Errors: []int{http.StatusNotFound, http.StatusUnprocessableEntity},
	}, bootService, func(ctx context.Context, in *bootProfileInput) (*struct{ Body InstallPlan }, error) {
		_, h, err := a.hostByMAC(ctx, in.MAC)
		if err != nil {
			return nil, err
		}
		if h.State != rackcloud.HostProvisioning {
			return nil, huma.Error404NotFound(fmt.Sprintf("host %s is %s, not provisioning: nothing to install", h.Name, h.State))
		}
		sealer, _ := a.deps.Sealer.(*store.Sealer)
		inst, err := store.GetHostInstall(ctx, a.deps.Pool, sealer, h.ID)
		switch {
		case errors.Is(err, store.ErrNoInstall):
			return nil, huma.Error404NotFound(fmt.Sprintf("host %s has no install plan yet", h.Name))
		case err != nil:
			return nil, a.problem(err)
		}
		im, err := store.GetImage(ctx, a.deps.Pool, inst.ImageID)
		if err != nil {
			return nil, a.problem(fmt.Errorf("host %s image %s: %w", h.Name, inst.ImageID, err))
		}
		return &struct{ Body InstallPlan }{Body: InstallPlan{HostID: h.ID, TaskID: inst.TaskID, Config: inst.Config,
			Image: InstallImage{ID: im.ID, Name: im.Name, URL: im.URL, Checksum: im.Checksum, Size: im.Size, Format: string(im.Format)}}}, nil
	})
}
