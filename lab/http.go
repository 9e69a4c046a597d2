package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

func httpGet(ctx context.Context, url string) (int, error) { return httpGetAuth(ctx, url, "") }

// httpGetAuth GETs url with a bearer token and returns the status.
func httpGetAuth(ctx context.Context, url, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// httpPostJSON POSTs body as JSON with a bearer token and decodes a 2xx
// answer into out.
func httpPostJSON(ctx context.Context, url, token string, body, out any) error {
	return httpJSONHeader(ctx, http.MethodPost, url, token, nil, body, out)
}

// httpJSON sends body (nil: none) as JSON with method and a bearer token,
// and decodes a 2xx answer into out (nil: ignored).
func httpJSON(ctx context.Context, method, url, token string, body, out any) error {
	return httpJSONHeader(ctx, method, url, token, nil, body, out)
}

// httpJSONHeader is httpJSON with extra request headers.
func httpJSONHeader(ctx context.Context, method, url, token string, header map[string]string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(rb))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(rb, out)
}
