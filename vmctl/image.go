package vmctl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/rackcloud/rackcloud"
)

// ImageFrom makes a driver's Image from an image record: its bytes are read
// from its URL (http, https or file) by hc (nil: http.DefaultClient) and
// checked against its checksum while they are read.
func ImageFrom(img rackcloud.Image, hc *http.Client) Image {
	if hc == nil {
		hc = http.DefaultClient
	}
	return Image{ID: img.ID, Name: img.Name, Format: img.Format, Checksum: img.Checksum, Size: img.Size,
		Open: func(ctx context.Context) (io.ReadCloser, error) { return openURL(ctx, hc, img.URL, img.Checksum) }}
}

func openURL(ctx context.Context, hc *http.Client, raw, checksum string) (io.ReadCloser, error) {
	want, ok := strings.CutPrefix(checksum, "sha256:")
	if !ok || len(want) != 64 {
		return nil, fmt.Errorf("%w: image checksum %q is not sha256:<hex>", rackcloud.ErrInvalid, checksum)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: image url: %v", rackcloud.ErrInvalid, err)
	}
	var body io.ReadCloser
	switch u.Scheme {
	case "file":
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, fmt.Errorf("open image %s: %w", raw, err)
		}
		body = f
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch image %s: %w", u.Redacted(), err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("fetch image %s: %s", u.Redacted(), resp.Status)
		}
		body = resp.Body
	default:
		return nil, fmt.Errorf("%w: image url scheme %q: want http, https or file", rackcloud.ErrInvalid, u.Scheme)
	}
	return &checkedReader{r: body, h: sha256.New(), want: want, name: u.Redacted()}, nil
}

// ErrChecksum is returned at the end of an image whose bytes do not match
// its checksum.
var ErrChecksum = fmt.Errorf("image checksum mismatch")

type checkedReader struct {
	r    io.ReadCloser
	h    hash.Hash
	want string
	name string
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			return n, fmt.Errorf("%w: %s has sha256:%s, want sha256:%s", ErrChecksum, c.name, got, c.want)
		}
	}
	return n, err
}

func (c *checkedReader) Close() error { return c.r.Close() }
