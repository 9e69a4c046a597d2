package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/hostimg"
)

// imageBuildVerb is `rackcloud image build`: it builds a host image on
// this machine (lab/hostimg), unlike the image verbs that talk to the API.
var imageBuildVerb = verb{"build", imageBuildUsage, "build a host image on this machine (cached by recipe)", runImageBuild}

const imageBuildUsage = "--role bm|kvm|docker [--cache-dir DIR] [--json]"

func runImageBuild(ctx context.Context, args []string) error {
	fs := newFlagSet("rackcloud image build", imageBuildUsage, "Builds the OS image rackcloud installs on hosts of a role, as a raw+zstd disk, on this\n"+
		"machine (root; Debian packages from lab/debian-packages.txt). An image whose recipe is unchanged\n"+
		"is taken from the cache. Progress goes to stderr; the image's path, raw size and sha256 to stdout.")
	role := fs.String("role", "", "host role: bm, kvm or docker")
	cache := fs.String("cache-dir", hostimg.DefaultCacheDir(), "image cache directory (env "+hostimg.EnvCacheDir+")")
	asJSON := fs.Bool("json", false, "print the image as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errUsage("rackcloud image build " + imageBuildUsage)
	}
	r := rackcloud.HostRole(*role)
	valid := false
	for _, x := range hostimg.Roles {
		valid = valid || x == r
	}
	if !valid {
		return fmt.Errorf("--role: want bm, kvm or docker, not %q", *role)
	}
	img, err := hostimg.Build(ctx, hostimg.Options{Role: r, CacheDir: *cache, Progress: stderr})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(img)
	}
	state := "built"
	if img.Cached {
		state = "cached"
	}
	fmt.Fprintf(stdout, "%s\nraw size %d bytes (%d MiB)\n%s\n(%s, recipe %s)\n", img.Path, img.RawSize, img.RawSize>>20,
		img.SHA256, state, strings.TrimSpace(img.Recipe))
	return nil
}
