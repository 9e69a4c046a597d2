package bootimg

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// DefaultCacheDir is where downloaded kernels and built images are kept
// between runs, unless EnvCacheDir says otherwise.
const DefaultCacheDir = "/var/cache/rackcloud/boot"

// EnvCacheDir names the environment variable that overrides DefaultCacheDir.
const EnvCacheDir = "RACKCLOUD_BOOT_CACHE"

// KernelMetaPackage is the Debian package whose dependency names the current
// kernel image package (linux-image-6.1.0-N-amd64 on Debian 12).
const KernelMetaPackage = "linux-image-amd64"

// CacheDir returns $RACKCLOUD_BOOT_CACHE or DefaultCacheDir.
func CacheDir() string {
	if d := os.Getenv(EnvCacheDir); d != "" {
		return d
	}
	return DefaultCacheDir
}

// Kernel is a Debian kernel package unpacked in the cache.
type Kernel struct {
	// Version is the kernel release, e.g. "6.1.0-56-amd64" (uname -r).
	Version string
	// Root is the directory the package was unpacked into.
	Root string
	// Vmlinuz is the path of the bootable kernel image.
	Vmlinuz string
	// ModulesDir is Root/lib/modules/<Version>.
	ModulesDir string
}

var kernelPkgRE = regexp.MustCompile(`^linux-image-(6\.1\.0-[0-9]+-amd64)$`)

// FetchKernel returns a Debian 6.1 amd64 kernel unpacked under cacheDir.
// A kernel already in the cache is reused without touching the network;
// otherwise the package named by linux-image-amd64's dependency is fetched
// with `apt-get download` and unpacked with `dpkg -x`. Concurrent callers
// (parallel test processes) are serialised by a lock file in cacheDir.
func FetchKernel(ctx context.Context, cacheDir string) (*Kernel, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("boot cache: %w", err)
	}
	unlock, err := lockDir(cacheDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k, err := cachedKernel(cacheDir); err == nil {
		return k, nil
	}
	pkg, err := kernelPackage(ctx)
	if err != nil {
		return nil, err
	}
	version := kernelPkgRE.FindStringSubmatch(pkg)[1]
	debs, _ := filepath.Glob(filepath.Join(cacheDir, pkg+"_*.deb"))
	if len(debs) == 0 {
		if out, err := runIn(ctx, cacheDir, "apt-get", "download", pkg); err != nil {
			return nil, fmt.Errorf("download kernel %s (apt reachable? run apt-get update): %w: %s", pkg, err, out)
		}
		debs, _ = filepath.Glob(filepath.Join(cacheDir, pkg+"_*.deb"))
		if len(debs) == 0 {
			return nil, fmt.Errorf("download kernel %s: no .deb in %s afterwards", pkg, cacheDir)
		}
	}
	sort.Strings(debs)
	tmp, err := os.MkdirTemp(cacheDir, ".unpack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if out, err := runIn(ctx, cacheDir, "dpkg", "-x", debs[len(debs)-1], tmp); err != nil {
		return nil, fmt.Errorf("unpack %s: %w: %s", debs[len(debs)-1], err, out)
	}
	final := filepath.Join(cacheDir, "linux-"+version)
	_ = os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("boot cache: %w", err)
	}
	k, err := kernelAt(final, version)
	if err != nil {
		return nil, err
	}
	// The .deb is no longer needed once unpacked: keep the cache small.
	for _, d := range debs {
		_ = os.Remove(d)
	}
	return k, nil
}

// cachedKernel returns the newest kernel already unpacked in cacheDir.
func cachedKernel(cacheDir string) (*Kernel, error) {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, "linux-6.1.0-*-amd64"))
	sort.Slice(dirs, func(i, j int) bool { return kernelABI(dirs[i]) > kernelABI(dirs[j]) })
	for _, d := range dirs {
		if k, err := kernelAt(d, strings.TrimPrefix(filepath.Base(d), "linux-")); err == nil {
			return k, nil
		}
	}
	return nil, fs.ErrNotExist
}

func kernelABI(dir string) int {
	var n int
	fmt.Sscanf(strings.TrimPrefix(filepath.Base(dir), "linux-6.1.0-"), "%d", &n)
	return n
}

func kernelAt(root, version string) (*Kernel, error) {
	k := &Kernel{
		Version:    version,
		Root:       root,
		Vmlinuz:    filepath.Join(root, "boot", "vmlinuz-"+version),
		ModulesDir: filepath.Join(root, "lib", "modules", version),
	}
	for _, p := range []string{k.Vmlinuz, k.ModulesDir} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("kernel %s: %w", version, err)
		}
	}
	return k, nil
}

// kernelPackage names the kernel image package to download, from the
// dependency of linux-image-amd64 or else the newest one apt knows.
func kernelPackage(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", KernelMetaPackage).Output()
	if err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) == 2 && f[0] == "Depends:" && kernelPkgRE.MatchString(f[1]) {
				return f[1], nil
			}
		}
	}
	out, err = exec.CommandContext(ctx, "apt-cache", "search", "--names-only", `^linux-image-6\.1\.0-[0-9]+-amd64$`).Output()
	if err != nil {
		return "", fmt.Errorf("find kernel package: apt-cache: %w", err)
	}
	var best string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && kernelPkgRE.MatchString(f[0]) && kernelABI("linux-"+strings.TrimPrefix(f[0], "linux-image-")) > kernelABI("linux-"+strings.TrimPrefix(best, "linux-image-")) {
			best = f[0]
		}
	}
	if best == "" {
		return "", errors.New("find kernel package: apt knows no linux-image-6.1.0-*-amd64 (run apt-get update)")
	}
	return best, nil
}

func runIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	c := exec.CommandContext(ctx, name, args...)
	c.Dir = dir
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return strings.TrimSpace(b.String()), err
}

// LockDir takes an exclusive lock on dir (its file .lock), waiting for
// it, so that processes sharing a cache build each thing once; call the
// returned function to release it.
func LockDir(dir string) (func(), error) { return lockDir(dir) }

func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("boot cache lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("boot cache lock: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Module is one kernel module file.
type Module struct {
	Name string // as the kernel knows it: underscores, no suffix
	Path string
}

// Modules returns the named modules and everything they depend on, in an
// order in which they can be loaded one by one with insmod (dependencies
// first). Names may use '-' or '_'. Dependencies are read from each
// module's .modinfo section, so no modules.dep is needed.
func (k *Kernel) Modules(names ...string) ([]Module, error) {
	index := map[string]string{}
	err := filepath.WalkDir(k.ModulesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			index[modName(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernel %s modules: %w", k.Version, err)
	}
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, chain []string) error
	visit = func(n string, chain []string) error {
		switch state[n] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("kernel %s: module dependency cycle %s", k.Version, strings.Join(append(chain, n), " -> "))
		}
		p, ok := index[n]
		if !ok {
			return fmt.Errorf("kernel %s: no module %q (wanted by %v)", k.Version, n, chain)
		}
		state[n] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, Module{Name: n, Path: p})
		return nil
	}
	for _, n := range names {
		if err := visit(modName(n), nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func modName(n string) string { return strings.ReplaceAll(n, "-", "_") }

// moduleDepends reads the depends= field of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, modName(d))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}
