package guestimg

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rackcloud/rackcloud/lab/hostimg"
)

// ContainerRecipeVersion is hashed into the container image's recipe with
// the busybox bytes: bump it when the layout or the command changes.
const ContainerRecipeVersion = "guestimg-container-v1"

// ContainerBusybox is the static busybox the image is made of (Debian's
// busybox-static, lab/debian-packages.txt).
const ContainerBusybox = "/bin/busybox"

// ContainerMarker is the line the image's command prints once it runs.
const ContainerMarker = "rackcloud-guest-up"

// ContainerCrashSignal makes the image's command exit with
// ContainerCrashCode, a crash on cue for tests.
const (
	ContainerCrashSignal = "USR1"
	ContainerCrashCode   = 3
)

// ContainerScript is the image's default command (/bin/sh -c): it prints
// ContainerMarker and sleeps until SIGTERM, on which it exits 143 at once
// (a trap: PID 1 without a handler ignores SIGTERM and docker stop would
// wait out its grace), or ContainerCrashSignal, on which it exits
// ContainerCrashCode.
const ContainerScript = `trap 'exit 143' TERM; trap 'exit 3' USR1; echo ` + ContainerMarker + `; sleep 2147483647 & wait`

// containerTools are the busybox applets linked into /bin.
var containerTools = []string{"sh", "echo", "sleep", "cat", "ls", "true", "false", "kill", "ps", "env", "mkdir", "rm", "touch", "wc", "id", "hostname", "uname"}

// Container returns a docker-archive (the layout `docker save` writes:
// manifest.json, the image config and one layer tar; no RepoTags, so a
// load leaves the image untagged) holding /bin/busybox, its applets as
// symlinks and ContainerScript as the default command. The archive is
// built once per recipe (the busybox bytes and ContainerRecipeVersion) and
// kept in dir (empty: hostimg.DefaultCacheDir()/containers); concurrent
// builders write the same bytes and rename them into place. sha256 is
// "sha256:<hex>" of the archive, as vmctl.Image.Checksum wants it.
func Container(dir string) (path, sha256sum string, size int64, err error) {
	if dir == "" {
		dir = filepath.Join(hostimg.DefaultCacheDir(), "containers")
	}
	bb, err := os.ReadFile(ContainerBusybox)
	if err != nil {
		return "", "", 0, fmt.Errorf("container image: %w (install busybox-static)", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", ContainerRecipeVersion, ContainerScript)
	h.Write(bb)
	recipe := hex.EncodeToString(h.Sum(nil))[:16]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", 0, fmt.Errorf("container image cache: %w", err)
	}
	path = filepath.Join(dir, "busybox-"+recipe+".tar")
	if b, err := os.ReadFile(path); err == nil {
		sum := sha256.Sum256(b)
		return path, "sha256:" + hex.EncodeToString(sum[:]), int64(len(b)), nil
	}
	b, err := containerArchive(bb)
	if err != nil {
		return "", "", 0, fmt.Errorf("container image: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".busybox-*.tar")
	if err != nil {
		return "", "", 0, fmt.Errorf("container image cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return "", "", 0, fmt.Errorf("container image cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", "", 0, fmt.Errorf("container image cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", "", 0, fmt.Errorf("container image cache: %w", err)
	}
	sum := sha256.Sum256(b)
	return path, "sha256:" + hex.EncodeToString(sum[:]), int64(len(b)), nil
}

// containerEpoch is every file's and the image's time: the archive's
// bytes depend only on the recipe.
var containerEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// containerArchive builds the docker-archive in memory (busybox is 2 MB).
func containerArchive(busybox []byte) ([]byte, error) {
	layer, err := containerLayer(busybox)
	if err != nil {
		return nil, err
	}
	diff := sha256.Sum256(layer)
	diffID := hex.EncodeToString(diff[:])
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      containerEpoch,
		"config": map[string]any{
			"Env":    []string{"PATH=/bin"},
			"Cmd":    []string{"/bin/sh", "-c", ContainerScript},
			"Labels": map[string]string{"org.rackcloud.recipe": ContainerRecipeVersion},
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + diffID}},
		"history": []map[string]any{{"created": containerEpoch, "created_by": "lab/guestimg " + ContainerRecipeVersion}},
	})
	if err != nil {
		return nil, err
	}
	cfg := sha256.Sum256(config)
	configName := hex.EncodeToString(cfg[:]) + ".json"
	layerName := diffID + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": nil, "Layers": []string{layerName}}})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		name string
		data []byte
	}{
		{diffID + "/VERSION", []byte("1.0")},
		{diffID + "/json", fmt.Appendf(nil, `{"id":%q,"created":%q}`, diffID, containerEpoch.Format(time.RFC3339))},
		{layerName, layer},
		{configName, config},
		{"manifest.json", manifest},
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: diffID + "/", Mode: 0o755, ModTime: containerEpoch}); err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := writeFile(tw, e.name, 0o644, e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// containerLayer is the image's one layer: the root file system.
func containerLayer(busybox []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "root/", "sys/", "tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: containerEpoch}); err != nil {
			return nil, err
		}
	}
	if err := writeFile(tw, "bin/busybox", 0o755, busybox); err != nil {
		return nil, err
	}
	for _, t := range containerTools {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + t, Linkname: "busybox", Mode: 0o777, ModTime: containerEpoch}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: containerEpoch}); err != nil {
		return err
	}
	_, err := io.Copy(tw, bytes.NewReader(data))
	return err
}
