package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

const imageCols = `id::text, name, url, checksum, format, size, roles, boot, labels, version, created_at, updated_at`

func scanImage(row pgx.Row) (rackcloud.Image, error) {
	var im rackcloud.Image
	var roles []string
	err := row.Scan(&im.ID, &im.Name, &im.URL, &im.Checksum, &im.Format, &im.Size, &roles, &im.Boot, &im.Labels, &im.Version,
		&im.CreatedAt, &im.UpdatedAt)
	for _, r := range roles {
		im.Roles = append(im.Roles, rackcloud.HostRole(r))
	}
	return im, MapError(err)
}

func roleStrings(rs []rackcloud.HostRole) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, string(r))
	}
	return out
}

// CreateImage inserts im.
func CreateImage(ctx context.Context, q Querier, im rackcloud.Image) (rackcloud.Image, error) {
	return scanImage(q.QueryRow(ctx, `INSERT INTO images (name, url, checksum, format, roles, boot, labels, size)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+imageCols,
		im.Name, im.URL, im.Checksum, string(im.Format), roleStrings(im.Roles), im.Boot, labelsOrEmpty(im.Labels), im.Size))
}

// GetImage returns the image with id, or rackcloud.ErrNotFound.
func GetImage(ctx context.Context, q Querier, id string) (rackcloud.Image, error) {
	if !ValidID(id) {
		return rackcloud.Image{}, rackcloud.ErrNotFound
	}
	return scanImage(q.QueryRow(ctx, `SELECT `+imageCols+` FROM images WHERE id = $1`, id))
}

// ListImages lists images.
func ListImages(ctx context.Context, q Querier, f Filter) ([]rackcloud.Image, error) {
	return listRows(ctx, q, listSpec{table: "images", cols: imageCols}, f, scanImage)
}

// UpdateImage writes im's URL, checksum, format, roles, boot profile and
// labels if its version is still im.Version.
func UpdateImage(ctx context.Context, q Querier, im rackcloud.Image) (rackcloud.Image, error) {
	out, err := scanImage(q.QueryRow(ctx, `UPDATE images SET url = $3, checksum = $4, format = $5, roles = $6, boot = $7,
		labels = $8, size = $9, version = version + 1, updated_at = now() WHERE id = $1::uuid AND version = $2 RETURNING `+imageCols,
		uuidArg(im.ID), im.Version, im.URL, im.Checksum, string(im.Format), roleStrings(im.Roles), im.Boot, labelsOrEmpty(im.Labels),
		im.Size))
	if err != nil {
		return out, versionError(ctx, q, "images", im.ID, err)
	}
	return out, nil
}

// DeleteImage deletes an image no host or guest uses.
func DeleteImage(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "images", id, version)
}
