package api_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

// The enums the API documents are the domain's lists, so that a reason or
// a state added at the root cannot be missing from the API.
func TestEnumsFollowTheDomain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	schemas := e.openAPI().Components.Schemas
	enum := func(schema, prop string) []string {
		s := schemas[schema]
		require.NotNil(t, s, schema)
		p := s.Properties[prop]
		require.NotNil(t, p, schema+"."+prop)
		var out []string
		for _, v := range p.Enum {
			out = append(out, v.(string))
		}
		return out
	}
	var reasons, states []string
	for _, r := range rackcloud.FailureReasons() {
		reasons = append(reasons, string(r))
	}
	for _, s := range rackcloud.HostStates() {
		states = append(states, string(s))
	}
	require.ElementsMatch(t, reasons, enum("HostFailure", "reason"))
	require.ElementsMatch(t, states, enum("Host", "state"))
}
