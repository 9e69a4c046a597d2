package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/hostimg"
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

// installRules builds and serves the host images of Config.Roles and
// writes an enroll rule per server (its MAC) that installs it with its
// role once inspected.
func (l *Lab) installRules(ctx context.Context, log *slog.Logger) error {
	images := map[rackcloud.HostRole]string{}
	for _, role := range l.Roles {
		if _, ok := images[role]; ok {
			continue
		}
		log.Info("lab: building the "+string(role)+" host image (cached by recipe; the first kvm or docker build takes minutes)",
			"cache", hostimg.DefaultCacheDir())
		im, err := hostimg.Build(ctx, hostimg.Options{Role: role, Log: log.With("component", "hostimg")})
		if err != nil {
			return fmt.Errorf("%s host image: %w", role, err)
		}
		id, err := l.ServeImage(ctx, HostImage{Role: role, Path: im.Path, Size: im.RawSize, SHA256: im.SHA256})
		if err != nil {
			return err
		}
		log.Info("lab: host image served", "role", role, "image", ImageName(role), "size", im.RawSize, "cached", im.Cached)
		images[role] = id
	}
	admin, err := l.Token()
	if err != nil {
		return err
	}
	var existing struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	if err := httpJSON(ctx, http.MethodGet, l.APIURL+"/v1/enroll-rules?limit=1000", admin, nil, &existing); err != nil {
		return err
	}
	have := map[string]bool{}
	for _, r := range existing.Items {
		have[r.Name] = true
	}
	if err := l.registerNodes(ctx, admin, log); err != nil {
		return err
	}
	for i, n := range l.Rack.Nodes {
		if i >= len(l.Roles) {
			break
		}
		role := l.Roles[i]
		name := "lab-" + n.Name
		if have[name] {
			continue
		}
		body := map[string]any{"name": name, "priority": 100 + i, "provision": true,
			"match": map[string]any{"mac_prefix": n.MAC.String()},
			"set":   map[string]any{"role": string(role), "image_id": images[role], "labels": map[string]string{"lab": "true"}}}
		if err := httpPostJSON(ctx, l.APIURL+"/v1/enroll-rules", admin, body, &struct{}{}); err != nil {
			return fmt.Errorf("enroll rule for %s: %w", n.Name, err)
		}
		log.Info("lab: enroll rule written", "node", n.Name, "mac", n.MAC.String(), "role", role)
	}
	return nil
}

// Follow prints the rack's servers' progress (state, step, what they wait
// for) as it changes, until every one is ready (or failed) or ctx ends.
func (l *Lab) Follow(ctx context.Context, w io.Writer) {
	admin, err := l.Token()
	if err != nil {
		return
	}
	start := time.Now()
	last := map[string]string{}
	for {
		var page struct {
			Items []struct {
				Name  string `json:"name"`
				State string `json:"state"`
				Role  string `json:"role"`
				Task  *struct {
					Kind       string `json:"kind"`
					Step       string `json:"step"`
					WaitingFor string `json:"waiting_for"`
				} `json:"task"`
				Failure *struct {
					Reason string `json:"reason"`
					Step   string `json:"step"`
					Detail string `json:"detail"`
				} `json:"failure"`
				Endpoint string `json:"endpoint"`
			} `json:"items"`
		}
		if err := httpJSON(ctx, http.MethodGet, l.APIURL+"/v1/hosts?limit=1000", admin, nil, &page); err == nil {
			done := 0
			for _, h := range page.Items {
				line := h.State
				if h.Role != "" {
					line += " (" + h.Role + ")"
				}
				switch {
				case h.Failure != nil:
					line += ": " + h.Failure.Reason + " at " + h.Failure.Step + ": " + h.Failure.Detail
				case h.Task != nil:
					line += ": " + h.Task.Kind + " " + h.Task.Step
					if h.Task.WaitingFor != "" {
						line += ", waiting for " + h.Task.WaitingFor
					}
				case h.Endpoint != "":
					line += " at " + h.Endpoint
				}
				if h.State == string(rackcloud.HostReady) || h.State == string(rackcloud.HostFailed) {
					done++
				}
				if last[h.Name] != line {
					last[h.Name] = line
					fmt.Fprintf(w, "  +%-6s %-22s %s\n", time.Since(start).Round(time.Second), h.Name, line)
				}
			}
			if len(page.Items) >= len(l.Rack.Nodes) && done == len(page.Items) {
				fmt.Fprintf(w, "  +%-6s every server is ready or failed: %s host list\n", time.Since(start).Round(time.Second), l.cli())
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
	}
}

// registerNodes registers the rack's servers that the API does not know
// yet with their boot MAC and BMC (IPMI for odd nodes, Redfish for even
// ones), as an operator importing the rack's inventory sheet would: a
// server that netboots by itself is discovered without a BMC, and
// rackcloud cannot read a BMC's address in-band here (no /dev/ipmi0 in
// the simulated servers).
func (l *Lab) registerNodes(ctx context.Context, admin string, log *slog.Logger) error {
	for i, n := range l.Rack.Nodes {
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		if err := httpJSON(ctx, http.MethodGet, l.APIURL+"/v1/hosts?mac="+n.MAC.String(), admin, nil, &page); err != nil {
			return err
		}
		if len(page.Items) > 0 {
			continue
		}
		b := map[string]any{"protocol": "ipmi", "address": n.IPMI.String(), "username": n.User, "password": n.Password}
		if i%2 == 1 && n.RedfishURL != "" {
			b["protocol"], b["address"] = "redfish", strings.TrimPrefix(n.RedfishURL, "https://")
		}
		body := map[string]any{"name": n.Name, "macs": []string{n.MAC.String()}, "bmc": b}
		if err := httpPostJSON(ctx, l.APIURL+"/v1/hosts", admin, body, &struct{}{}); err != nil {
			return fmt.Errorf("register %s: %w", n.Name, err)
		}
		log.Info("lab: server registered with its BMC", "node", n.Name, "mac", n.MAC.String(), "bmc", b["protocol"])
	}
	return nil
}
