package provisioner_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// The enroll rules give an available host its role and image and, with
// provision, install it; verdicts are kept; a host no rule matched is
// looked at again once a rule changed, and never twice otherwise.
func TestAutoEnroll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	roles := &fakeRoles{}
	e := newProvisionEnv(t, roles, time.Hour)
	p := e.prov
	h, im := e.available("auto")

	// A rule for other machines: no match, recorded.
	_, err := store.CreateEnrollRule(ctx, e.pool, rackcloud.EnrollRule{Meta: rackcloud.Meta{Name: "big"}, Priority: 10,
		Match: rackcloud.EnrollMatch{MinMemoryMiB: 65536}, Set: rackcloud.EnrollSet{Role: rackcloud.RoleDocker, ImageID: im.ID}, Provision: true})
	require.NoError(t, err)
	n, err := p.AutoEnroll(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	rule, verdicts, err := store.HostEnrollMatch(ctx, e.pool, h.ID)
	require.NoError(t, err)
	require.Empty(t, rule)
	require.Len(t, verdicts, 1)
	require.Contains(t, verdicts[0].Reason, "memory 8192 MiB < 65536")
	n, err = p.AutoEnroll(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "evaluated once")

	// A rule for this MAC: the host is looked at again and provisioned.
	r, err := store.CreateEnrollRule(ctx, e.pool, rackcloud.EnrollRule{Meta: rackcloud.Meta{Name: "lab"}, Priority: 5,
		Match: rackcloud.EnrollMatch{MACPrefix: "52:54:00:be"}, Set: rackcloud.EnrollSet{Role: rackcloud.RoleDocker, ImageID: im.ID,
			Labels: rackcloud.Labels{"tier": "lab"}}, Provision: true})
	require.NoError(t, err)
	n, err = p.AutoEnroll(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	rule, _, err = store.HostEnrollMatch(ctx, e.pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, r.ID, rule)
	got := e.get(h.ID)
	require.Equal(t, rackcloud.RoleDocker, got.Role)
	require.Equal(t, "lab", got.Labels["tier"])
	require.NotNil(t, got.Task)
	require.Equal(t, rackcloud.KindHostProvision, got.Task.Kind)
	e.waitFor(got.Task.ID, "the installer")
	require.Equal(t, rackcloud.HostProvisioning, e.get(h.ID).State)
	n, err = p.AutoEnroll(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
}
