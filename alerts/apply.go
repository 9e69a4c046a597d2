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
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(content); err != nil {
		f.Close()
		return fmt.Errorf("write rules: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write rules: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// Reload asks the Prometheus at base (started with --web.enable-lifecycle)
// to reload its configuration and rule files.
func Reload(ctx context.Context, c *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/-/reload", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("reload prometheus: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reload prometheus: %s", resp.Status)
	}
	return nil
}
