package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/guestimg"
	"github.com/rackcloud/rackcloud/lab/hostimg"
)

// Demo names: the project and guests Demo makes.
const (
	DemoProject   = "demo"
	DemoContainer = "demo-ctr"
	DemoVM        = "demo-vm"
)

// Demo runs one container and one VM in project "demo" once the rack's
// docker and kvm hosts are ready, as an operator's first guests would,
// and prints each guest's task as it goes. It is what `make run` shows
// after the rack is up. Guest images are built by lab/guestimg (cached)
// and given to rackcloud as file:// URLs: the server runs on this machine
// and streams them to the hosts' daemons. Both have HA policy restart:
// when their host dies, the availability controller fences it and runs
// them on another host of the role, if the rack has one.
func (l *Lab) Demo(ctx context.Context, w io.Writer) error {
	admin, err := l.Token()
	if err != nil {
		return err
	}
	cache := filepath.Join(hostimg.DefaultCacheDir(), "guests")
	var proj struct {
		ID string `json:"id"`
	}
	if err := l.findOrCreate(ctx, admin, "/v1/projects", DemoProject, map[string]any{"name": DemoProject,
		"description": "the lab's demo guests"}, &proj); err != nil {
		return err
	}
	if err := httpJSON(ctx, http.MethodPut, l.APIURL+"/v1/projects/"+proj.ID+"/quota", admin,
		map[string]any{"reserved": map[string]any{"vcpu": 8, "memory_mib": 4096, "disk_gib": 20, "hosts": 0}}, nil); err != nil {
		return fmt.Errorf("demo quota: %w", err)
	}
	type guestSpec struct {
		name, kind, image string
		format            rackcloud.ImageFormat
		build             func(string) (string, string, int64, error)
		mem, disk         int
	}
	for _, g := range []guestSpec{
		{DemoContainer, "container", "demo-busybox", rackcloud.FormatDockerArchive, guestimg.Container, 64, 1},
		{DemoVM, "vm", "demo-tiny-vm", rackcloud.FormatRaw, guestimg.VM, 256, 1},
	} {
		path, sum, size, err := g.build(cache)
		if err != nil {
			return fmt.Errorf("demo image %s: %w", g.image, err)
		}
		var img struct {
			ID string `json:"id"`
		}
		if err := l.findOrCreate(ctx, admin, "/v1/images", g.image, map[string]any{"name": g.image, "url": "file://" + path,
			"checksum": sum, "size": size, "format": string(g.format)}, &img); err != nil {
			return err
		}
		var task struct {
			ID string `json:"id"`
		}
		err = httpPostJSON(ctx, l.APIURL+"/v1/guests", admin, map[string]any{"project_id": proj.ID, "name": g.name, "kind": g.kind,
			"image_id": img.ID, "ha": "restart", "flavor": map[string]any{"vcpu": 1, "memory_mib": g.mem, "disk_gib": g.disk}}, &task)
		if err != nil {
			fmt.Fprintf(w, "  demo: %s: %v\n", g.name, err)
			continue
		}
		fmt.Fprintf(w, "  demo: %s (%s) task %s: %s task get %s --wait\n", g.name, g.kind, task.ID, l.cli(), task.ID)
		go l.followTask(ctx, w, admin, g.name, task.ID)
	}
	return nil
}

// findOrCreate finds the resource named name in collection, or creates it
// with body.
func (l *Lab) findOrCreate(ctx context.Context, admin, coll, name string, body map[string]any, out any) error {
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := httpJSON(ctx, http.MethodGet, l.APIURL+coll+"?limit=1000", admin, nil, &list); err != nil {
		return err
	}
	for _, it := range list.Items {
		if it["name"] == name {
			return httpJSON(ctx, http.MethodGet, l.APIURL+coll+"/"+it["id"].(string), admin, nil, out)
		}
	}
	return httpPostJSON(ctx, l.APIURL+coll, admin, body, out)
}

// followTask prints a task's step changes until it ends.
func (l *Lab) followTask(ctx context.Context, w io.Writer, admin, name, id string) {
	start := time.Now()
	last := ""
	for ctx.Err() == nil {
		var t struct {
			State    string `json:"state"`
			StepName string `json:"step_name"`
			Error    string `json:"error"`
		}
		if err := httpJSON(ctx, http.MethodGet, l.APIURL+"/v1/tasks/"+id, admin, nil, &t); err == nil {
			line := t.State + " " + t.StepName
			if t.Error != "" {
				line += ": " + t.Error
			}
			if line != last {
				last = line
				fmt.Fprintf(w, "  +%-6s %-22s %s\n", time.Since(start).Round(time.Second), name, line)
			}
			if t.State == string(rackcloud.TaskSucceeded) || t.State == string(rackcloud.TaskFailed) ||
				t.State == string(rackcloud.TaskCanceled) {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}
