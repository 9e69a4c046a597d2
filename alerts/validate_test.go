package alerts_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
)

func rule(expr string) rackcloud.AlertRule {
	return rackcloud.AlertRule{Meta: rackcloud.Meta{Name: "host-too-hot"}, Expr: expr, Op: ">", Threshold: 80,
		For: 2 * time.Minute, Severity: "warning", Scope: rackcloud.AlertFleet}
}

func TestValidate(t *testing.T) {
	require.NoError(t, alerts.Validate(rule(`max by (host) (rackcloud_bmc_up)`)))

	for name, c := range map[string]struct {
		expr, field, pos string
	}{
		"unclosed paren":   {"sum(up", "body.expr", "1:7"},
		"unknown function": {"nosuch(up)", "body.expr", "1:1"},
		"bad matcher":      {`up{host=~"("}`, "body.expr", "1:4"},
	} {
		t.Run(name, func(t *testing.T) {
			err := alerts.Validate(rule(c.expr))
			var ie *alerts.InvalidError
			require.True(t, errors.As(err, &ie), "%v", err)
			require.ErrorIs(t, err, rackcloud.ErrInvalid)
			require.Equal(t, c.field, ie.Field)
			require.Equal(t, c.pos, ie.Pos, ie.Msg)
		})
	}

	bad := rule("up")
	bad.Labels = map[string]string{"": "x"}
	var ie *alerts.InvalidError
	require.True(t, errors.As(alerts.Validate(bad), &ie))
	require.Equal(t, "body", ie.Field)
}
