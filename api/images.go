package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// ImageBody creates an image.
type ImageBody struct {
	Name     string            `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Unique name." example:"debian-12"`
	URL      string            `json:"url" minLength:"1" maxLength:"2048" format:"uri" doc:"Where the image is." example:"http://images.example/debian-12.qcow2"`
	Checksum string            `json:"checksum" pattern:"^sha256:[0-9a-f]{64}$" doc:"sha256:<hex> of the image." example:"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"`
	Format   string            `json:"format" enum:"raw,raw+zstd,qcow2,docker-archive" doc:"Format: raw, raw+zstd (a raw disk as zstd frames; independent frames of 4 MiB let an installer resume a dropped download), qcow2 (VM guest images), docker-archive (a container image as docker save writes it, loaded without a registry)."`
	Size     int64             `json:"size,omitempty" minimum:"0" doc:"Bytes of the disk the image holds (raw, whatever the format): the installer checks it fits, writes it and reads it back against checksum. Required for host images (with roles)." example:"33554432"`
	Roles    []string          `json:"roles,omitempty" maxItems:"3" uniqueItems:"true" doc:"Host roles the image serves; empty for guest images." example:"[\"kvm\"]"`
	Boot     *BootProfile      `json:"boot,omitempty" doc:"Network boot profile."`
	Labels   map[string]string `json:"labels,omitempty" doc:"Labels for selection and grouping."`
}

// ImageUpdateBody changes an image.
type ImageUpdateBody struct {
	URL      *string           `json:"url,omitempty" minLength:"1" maxLength:"2048" format:"uri" doc:"Where the image is."`
	Checksum *string           `json:"checksum,omitempty" pattern:"^sha256:[0-9a-f]{64}$" doc:"sha256:<hex> of the image."`
	Size     *int64            `json:"size,omitempty" minimum:"1" doc:"Bytes of the disk the image holds."`
	Boot     *BootProfile      `json:"boot,omitempty" doc:"Network boot profile."`
	Labels   map[string]string `json:"labels,omitempty" doc:"Replaces all labels when present."`
}

func checkRoles(roles []string) ([]rackcloud.HostRole, error) {
	out := []rackcloud.HostRole{}
	for i, r := range roles {
		switch rackcloud.HostRole(r) {
		case rackcloud.RoleBareMetal, rackcloud.RoleKVM, rackcloud.RoleDocker:
			out = append(out, rackcloud.HostRole(r))
		default:
			return nil, huma.Error422UnprocessableEntity("unknown role", &huma.ErrorDetail{Location: "body.roles[" + itoa(i) + "]", Message: "want bm, kvm or docker", Value: r})
		}
	}
	return out, nil
}

func registerImages(a *API) {
	c := &crud[rackcloud.Image, Image]{a: a, tag: "Images", path: "/v1/images", kind: "image", opName: "Image", plural: "Images",
		read: anyRole, write: staffOnly, get: store.GetImage, list: store.ListImages, del: store.DeleteImage,
		meta: func(im rackcloud.Image) rackcloud.Meta { return im.Meta }, out: imageOut,
		delDoc: "Deletes an image no host or guest uses (409 otherwise)."}
	c.registerAll("Lists images in name order, keyset-paginated.")

	register(a, huma.Operation{
		OperationID: "createImage", Method: http.MethodPost, Path: "/v1/images", Summary: "Create an image",
		Tags: []string{c.tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, staffOnly, func(ctx context.Context, in *struct{ Body ImageBody }) (*itemOutput[Image], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		roles, err := checkRoles(in.Body.Roles)
		if err != nil {
			return nil, err
		}
		if len(roles) > 0 && in.Body.Size == 0 {
			return nil, huma.Error422UnprocessableEntity("a host image needs its size", &huma.ErrorDetail{Location: "body.size",
				Message: "the bytes of disk the image holds: the installer checks the disk is large enough and reads that much back"})
		}
		if len(roles) > 0 && in.Body.Format == string(rackcloud.FormatQCOW2) {
			return nil, huma.Error422UnprocessableEntity("host images are raw or raw+zstd", &huma.ErrorDetail{Location: "body.format",
				Message: "the installer writes raw disks", Value: in.Body.Format})
		}
		im := rackcloud.Image{Meta: rackcloud.Meta{Name: in.Body.Name, Labels: in.Body.Labels}, URL: in.Body.URL,
			Checksum: in.Body.Checksum, Format: rackcloud.ImageFormat(in.Body.Format), Roles: roles, Size: in.Body.Size}
		if in.Body.Boot != nil {
			im.Boot = rackcloud.BootProfile(*in.Body.Boot)
		}
		return c.created(ctx, a.newChange(ctx, "createImage", "image/"+im.Name), func(tx pgx.Tx) (rackcloud.Image, error) {
			return store.CreateImage(ctx, tx, im)
		})
	})

	register(a, huma.Operation{
		OperationID: "updateImage", Method: http.MethodPatch, Path: "/v1/images/{id}", Summary: "Update an image",
		Tags: []string{c.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, staffOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body ImageUpdateBody
	}) (*itemOutput[Image], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return c.patch(ctx, "updateImage", in.ID, in.IfMatch, func(_ pgx.Tx, im *rackcloud.Image) error {
			if in.Body.URL != nil {
				im.URL = *in.Body.URL
			}
			if in.Body.Checksum != nil {
				im.Checksum = *in.Body.Checksum
			}
			if in.Body.Size != nil {
				im.Size = *in.Body.Size
			}
			if in.Body.Boot != nil {
				im.Boot = rackcloud.BootProfile(*in.Body.Boot)
			}
			if in.Body.Labels != nil {
				im.Labels = in.Body.Labels
			}
			return nil
		}, store.UpdateImage)
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
