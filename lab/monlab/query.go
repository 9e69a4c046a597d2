package monlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Sample is one series of an instant query's result.
type Sample struct {
	Metric map[string]string
	Value  string
}

// Query runs an instant PromQL query against the Prometheus at base.
func Query(ctx context.Context, base, expr string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, r.Error)
	}
	out := make([]Sample, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		v := ""
		if len(s.Value) == 2 {
			v, _ = s.Value[1].(string)
		}
		out = append(out, Sample{Metric: s.Metric, Value: v})
	}
	return out, nil
}

// WaitQuery polls expr every 250 ms until ok accepts the result or ctx
// ends; it returns the last result and, on timeout, the last error.
func WaitQuery(ctx context.Context, base, expr string, ok func([]Sample) bool) ([]Sample, error) {
	for {
		res, err := Query(ctx, base, expr)
		if err == nil && ok(res) {
			return res, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("query %q: condition not met, last result %v", expr, res)
			}
			return res, fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		case <-time.After(250 * time.Millisecond):
		}
	}
}
