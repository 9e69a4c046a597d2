package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// TransitionHost is a compare-and-set: of writers that read the same
// state, one moves the host; a move to failed keeps a typed failure and
// every other move clears it.
func TestTransitionHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	h, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "t1"}})
	require.NoError(t, err)
	require.Equal(t, rackcloud.HostDiscovered, h.State)

	const racers = 8
	var wg sync.WaitGroup
	wins := make(chan bool, racers)
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := store.TransitionHost(ctx, pool, h.ID, store.Transition{From: rackcloud.HostDiscovered, To: rackcloud.HostInspecting})
			if err != nil {
				require.True(t, store.IsStaleState(err), err)
				require.ErrorIs(t, err, rackcloud.ErrConflict)
				require.ErrorContains(t, err, "it is inspecting")
			}
			wins <- err == nil
		}()
	}
	wg.Wait()
	close(wins)
	n := 0
	for w := range wins {
		if w {
			n++
		}
	}
	require.Equal(t, 1, n, "exactly one racer moves the host")
	got, err := store.GetHost(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, h.Version+1, got.Version, "a transition is a new version")

	_, err = store.TransitionHost(ctx, pool, h.ID, store.Transition{From: rackcloud.HostInspecting, To: rackcloud.HostFailed})
	require.ErrorIs(t, err, rackcloud.ErrInvalid, "failed needs a reason")
	failed, err := store.TransitionHost(ctx, pool, h.ID, store.Transition{From: rackcloud.HostInspecting, To: rackcloud.HostFailed,
		Failure: &rackcloud.HostFailure{Reason: rackcloud.FailAgentTimeout, Step: "await-inventory", Detail: "no inventory in 10m0s"}})
	require.NoError(t, err)
	require.Equal(t, &rackcloud.HostFailure{Reason: rackcloud.FailAgentTimeout, Step: "await-inventory", In: rackcloud.HostInspecting,
		Detail: "no inventory in 10m0s"}, failed.Failure)
	require.Equal(t, "no inventory in 10m0s", failed.StateReason)

	back, err := store.TransitionHost(ctx, pool, h.ID, store.Transition{From: rackcloud.HostFailed, To: rackcloud.HostInspecting})
	require.NoError(t, err)
	require.Nil(t, back.Failure, "leaving failed clears the failure")
	require.Empty(t, back.StateReason)

	// The database refuses a failed host without a reason, whoever writes.
	_, err = pool.Exec(ctx, `UPDATE hosts SET state = 'failed' WHERE id = $1::uuid`, h.ID)
	require.Error(t, err)
}

// Every failure reason of the domain is one the database takes.
func TestEveryFailureReasonIsStorable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	for i, r := range rackcloud.FailureReasons() {
		h, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: fmt.Sprintf("r%d", i)}, State: rackcloud.HostProvisioning})
		require.NoError(t, err)
		_, err = store.TransitionHost(ctx, pool, h.ID, store.Transition{From: rackcloud.HostProvisioning, To: rackcloud.HostFailed,
			Failure: &rackcloud.HostFailure{Reason: r}})
		require.NoError(t, err, r)
	}
}
