package alerts_test

import (
	"io"
	"net/http"
	"os"
	"testing"
)

func mkdir(d string) error { return os.MkdirAll(d, 0o755) }

func get(t *testing.T, url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
