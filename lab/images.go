package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/pxe"
)

// HostImage is a host image file the lab serves and registers.
type HostImage struct {
	Role rackcloud.HostRole
	// Path is the raw+zstd file (imagefmt); Size and SHA256
	// ("sha256:<hex>") are the disk's.
	Path   string
	Size   int64
	SHA256 string
}

// ImageName is the name of the lab's image for role.
func ImageName(role rackcloud.HostRole) string { return "lab-" + string(role) }

// ServeImage puts im under the boot service's files (a hard link, or a
// copy across file systems) and creates or updates the API's image
// ImageName(im.Role) to point at it. It returns the image's ID.
func (l *Lab) ServeImage(ctx context.Context, im HostImage) (string, error) {
	if l.Boot == nil {
		return "", fmt.Errorf("no boot service to serve %s", im.Path)
	}
	name := filepath.Base(im.Path)
	dst := filepath.Join(l.Dir, "boot", "files", "images", name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if _, err := os.Stat(dst); err != nil {
		if err := linkOrCopy(im.Path, dst); err != nil {
			return "", fmt.Errorf("serve %s: %w", im.Path, err)
		}
	}
	url := "http://" + l.Boot.HTTPAddr().String() + "/files/images/" + name
	admin, err := l.Token()
	if err != nil {
		return "", err
	}
	var list struct {
		Items []struct {
			ID       string `json:"id"`
			Name     string `json:"name"`
			URL      string `json:"url"`
			Checksum string `json:"checksum"`
			Size     int64  `json:"size"`
			Version  int64  `json:"version"`
		} `json:"items"`
	}
	if err := httpJSON(ctx, http.MethodGet, l.APIURL+"/v1/images?limit=1000", admin, nil, &list); err != nil {
		return "", err
	}
	body := map[string]any{"url": url, "checksum": im.SHA256, "size": im.Size}
	for _, it := range list.Items {
		if it.Name != ImageName(im.Role) {
			continue
		}
		if it.URL == url && it.Checksum == im.SHA256 && it.Size == im.Size {
			return it.ID, nil
		}
		err := httpJSONHeader(ctx, http.MethodPatch, l.APIURL+"/v1/images/"+it.ID, admin,
			map[string]string{"If-Match": `"` + strconv.FormatInt(it.Version, 10) + `"`}, body, nil)
		return it.ID, err
	}
	body["name"], body["format"], body["roles"] = ImageName(im.Role), string(rackcloud.FormatRawZstd), []string{string(im.Role)}
	var out struct {
		ID string `json:"id"`
	}
	err = httpPostJSON(ctx, l.APIURL+"/v1/images", admin, body, &out)
	return out.ID, err
}

// BootURL is the boot service's URL on the provisioning network.
func (l *Lab) BootURL() string {
	return "http://" + l.Gateway.Addr().String() + ":" + strconv.Itoa(pxe.DefaultHTTPPort)
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
