package alerts

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

// WriteRuleFile writes content to dir/name atomically (a temporary file in
// dir renamed over the old one), so Prometheus never reads half a file.
func WriteRuleFile(dir, name string, content []byte) error {
	if err := writeAtomic(dir, name, content, 0o644); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	return nil
}

// WriteAMConfig writes a rendered alertmanager.yml to path atomically,
// mode 0640: it may hold secrets (webhook URLs, an inline token).
func WriteAMConfig(path string, content []byte) error {
	if err := writeAtomic(filepath.Dir(path), filepath.Base(path), content, 0o640); err != nil {
		return fmt.Errorf("write alertmanager config: %w", err)
	}
	return nil
}

func writeAtomic(dir, name string, content []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), mode); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// Reload asks the Prometheus at base (started with --web.enable-lifecycle)
// to reload its configuration and rule files; an Alertmanager at base
// reloads its configuration the same way.
func Reload(ctx context.Context, c *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/-/reload", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("reload %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reload %s: %s", base, resp.Status)
	}
	return nil
}
