package alerts

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPlanSilences(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := 10 * time.Hour
	fresh, stale, older := now.Add(9*time.Hour), now.Add(4*time.Hour), now.Add(3*time.Hour)
	for name, tc := range map[string]struct {
		want map[string]string
		have []Silence
		plan silencePlan
	}{
		"nothing":         {},
		"new host":        {want: map[string]string{"a": "disk swap"}, plan: silencePlan{post: []silencePost{{Host: "a", Reason: "disk swap"}}}},
		"kept":            {want: map[string]string{"a": ""}, have: []Silence{{ID: "1", Host: "a", EndsAt: fresh}}},
		"renewed":         {want: map[string]string{"a": "r"}, have: []Silence{{ID: "1", Host: "a", EndsAt: stale}}, plan: silencePlan{post: []silencePost{{ID: "1", Host: "a", Reason: "r"}}}},
		"left":            {have: []Silence{{ID: "1", Host: "a", EndsAt: fresh}}, plan: silencePlan{expire: []string{"1"}}},
		"duplicates":      {want: map[string]string{"a": ""}, have: []Silence{{ID: "1", Host: "a", EndsAt: older}, {ID: "2", Host: "a", EndsAt: fresh}}, plan: silencePlan{expire: []string{"1"}}},
		"stale dups":      {want: map[string]string{"a": ""}, have: []Silence{{ID: "1", Host: "a", EndsAt: older}, {ID: "2", Host: "a", EndsAt: stale}}, plan: silencePlan{post: []silencePost{{ID: "2", Host: "a"}}, expire: []string{"1"}}},
		"several, sorted": {want: map[string]string{"c": "", "a": ""}, have: []Silence{{ID: "9", Host: "b", EndsAt: fresh}}, plan: silencePlan{post: []silencePost{{Host: "a"}, {Host: "c"}}, expire: []string{"9"}}},
	} {
		t.Run(name, func(t *testing.T) {
			got := planSilences(tc.want, tc.have, now, d)
			if diff := cmp.Diff(tc.plan, got, cmp.AllowUnexported(silencePlan{}, silencePost{})); diff != "" {
				t.Fatal(diff)
			}
		})
	}
}
