package store_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

func TestCursorRoundTripAndRejectsForgeries(t *testing.T) {
	t.Parallel()
	c := store.Cursor{Name: "node-07", ID: "5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f"}
	got, err := store.ParseCursor(c.Encode())
	require.NoError(t, err)
	require.Equal(t, c, got)
	z, err := store.ParseCursor("")
	require.NoError(t, err)
	require.True(t, z.IsZero())
	for _, bad := range []string{"!!!", "bm8tbnVs", "eAB4"} { // not base64; no NUL; NUL but no UUID
		_, err := store.ParseCursor(bad)
		require.ErrorIs(t, err, rackcloud.ErrInvalid, bad)
	}
}

func TestSealerBindsToKeyAndRecord(t *testing.T) {
	t.Parallel()
	s, err := store.NewSealer(bytes.Repeat([]byte{1}, 32))
	require.NoError(t, err)
	sealed, err := s.Seal("hunter2", []byte("host-a"))
	require.NoError(t, err)
	require.NotContains(t, sealed, "hunter2")
	again, err := s.Seal("hunter2", []byte("host-a"))
	require.NoError(t, err)
	require.NotEqual(t, sealed, again, "fresh nonce each time")
	plain, err := s.Open(sealed, []byte("host-a"))
	require.NoError(t, err)
	require.Equal(t, "hunter2", plain)
	_, err = s.Open(sealed, []byte("host-b"))
	require.Error(t, err, "another record")
	other, err := store.NewSealer(bytes.Repeat([]byte{2}, 32))
	require.NoError(t, err)
	_, err = other.Open(sealed, []byte("host-a"))
	require.Error(t, err, "another key")
	_, err = s.Open("rcs0:"+sealed[10:], []byte("host-a"))
	require.Error(t, err, "tampered")
	_, err = store.NewSealer([]byte("short"))
	require.Error(t, err)
}

func TestQuotaIsKeptByTheDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	p, err := store.CreateProject(ctx, pool, rackcloud.Project{Meta: rackcloud.Meta{Name: "p"}})
	require.NoError(t, err)
	im, err := store.CreateImage(ctx, pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "i"}, URL: "http://x", Checksum: "sha256:" + string(bytes.Repeat([]byte("a"), 64)), Format: rackcloud.FormatRaw})
	require.NoError(t, err)
	q, err := store.GetQuota(ctx, pool, p.ID)
	require.NoError(t, err)
	require.Zero(t, q.Reserved.CPUCores, "a new project reserves nothing")
	guest := func(name string, kind rackcloud.GuestKind, vcpu int) error {
		_, err := store.CreateGuest(ctx, pool, rackcloud.Guest{Meta: rackcloud.Meta{Name: name}, ProjectID: p.ID, Kind: kind,
			Flavor: rackcloud.Resources{CPUCores: vcpu, MemoryMiB: 100, DiskGiB: 1}, ImageID: im.ID})
		return err
	}
	require.ErrorIs(t, guest("a", rackcloud.GuestVM, 1), store.ErrQuotaExceeded)
	_, err = store.SetQuota(ctx, pool, p.ID, 0, rackcloud.Resources{CPUCores: 4, MemoryMiB: 1000, DiskGiB: 10}, 1)
	require.NoError(t, err)
	require.NoError(t, guest("a", rackcloud.GuestVM, 3))
	require.ErrorIs(t, guest("b", rackcloud.GuestVM, 2), store.ErrQuotaExceeded)
	require.NoError(t, guest("c", rackcloud.GuestBareMetal, 1))
	require.ErrorIs(t, guest("d", rackcloud.GuestBareMetal, 0), store.ErrQuotaExceeded, "one host reserved")
	q, err = store.GetQuota(ctx, pool, p.ID)
	require.NoError(t, err)
	require.Equal(t, 4, q.Used.CPUCores)
	require.Equal(t, 1, q.UsedHosts)
	_, err = store.SetQuota(ctx, pool, p.ID, q.Version, rackcloud.Resources{CPUCores: 3, MemoryMiB: 1000, DiskGiB: 10}, 1)
	require.ErrorIs(t, err, store.ErrQuotaExceeded, "below use")
	_, err = store.SetQuota(ctx, pool, p.ID, q.Version-1, rackcloud.Resources{CPUCores: 8, MemoryMiB: 1000, DiskGiB: 10}, 1)
	require.ErrorIs(t, err, store.ErrStaleVersion)

	gs, err := store.ListGuests(ctx, pool, store.Filter{Parent: p.ID})
	require.NoError(t, err)
	for _, g := range gs {
		require.NoError(t, store.DeleteGuest(ctx, pool, g.ID, 0))
	}
	q, err = store.GetQuota(ctx, pool, p.ID)
	require.NoError(t, err)
	require.Zero(t, q.Used.CPUCores, "deleting guests gives the quota back")
	require.Zero(t, q.UsedHosts)
}

func TestTokensAndBootstrap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	rec, secret, err := store.Bootstrap(ctx, pool, store.BootstrapOptions{})
	require.NoError(t, err)
	require.Equal(t, rackcloud.RoleAdmin, rec.Role)
	_, _, err = store.Bootstrap(ctx, pool, store.BootstrapOptions{})
	require.ErrorIs(t, err, rackcloud.ErrConflict, "only once without force")
	_, second, err := store.Bootstrap(ctx, pool, store.BootstrapOptions{Force: true})
	require.NoError(t, err)
	require.NotEqual(t, secret, second)

	now := time.Now()
	got, err := store.Authenticate(ctx, pool, secret, now)
	require.NoError(t, err)
	require.Equal(t, rec.ID, got.ID)
	require.Equal(t, "admin", got.UserName)
	for _, bad := range []string{"", "rct_", "rct_nope", secret + "x", "Bearer " + secret} {
		_, err := store.Authenticate(ctx, pool, bad, now)
		require.ErrorIs(t, err, store.ErrBadToken, bad)
	}
	exp := now.Add(time.Hour)
	tok, s3, err := store.CreateToken(ctx, pool, rackcloud.Token{Meta: rackcloud.Meta{Name: "short"}, UserID: rec.UserID, Role: rackcloud.RoleViewer, ExpiresAt: &exp})
	require.NoError(t, err)
	_, err = store.Authenticate(ctx, pool, s3, now)
	require.NoError(t, err)
	_, err = store.Authenticate(ctx, pool, s3, exp)
	require.ErrorIs(t, err, store.ErrBadToken, "expired")
	require.NoError(t, store.DeleteToken(ctx, pool, tok.ID, 0))
	_, err = store.Authenticate(ctx, pool, s3, now)
	require.ErrorIs(t, err, store.ErrBadToken, "revoked")
}

func TestHostsByMACAndStaleUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	h, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "h1"}, MACs: []string{"52:54:00:aa:00:01", "52:54:00:aa:00:02"}})
	require.NoError(t, err)
	require.Equal(t, rackcloud.HostDiscovered, h.State)
	got, err := store.GetHostByMAC(ctx, pool, "52-54-00-AA-00-02")
	require.NoError(t, err)
	require.Equal(t, h.ID, got.ID)
	require.Equal(t, []string{"52:54:00:aa:00:01", "52:54:00:aa:00:02"}, got.MACs)
	_, err = store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "h2"}, MACs: []string{"52:54:00:aa:00:01"}})
	require.ErrorIs(t, err, rackcloud.ErrConflict, "a MAC has one host")
	h.State = rackcloud.HostAvailable
	h.Position = 7
	upd, err := store.UpdateHost(ctx, pool, h)
	require.NoError(t, err)
	require.Equal(t, int64(2), upd.Version)
	require.Equal(t, 7, upd.Position)
	require.Equal(t, rackcloud.HostDiscovered, upd.State, "only TransitionHost moves a host")
	_, err = store.UpdateHost(ctx, pool, h) // still version 1
	require.ErrorIs(t, err, store.ErrStaleVersion)
	require.NoError(t, store.SetHostBMCSecret(ctx, pool, h.ID, "rcs0:x"))
	s, err := store.HostBMCSecret(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, "rcs0:x", s)
}

func FuzzParseCursor(f *testing.F) {
	f.Add("")
	f.Add(store.Cursor{Name: "a", ID: "5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f"}.Encode())
	f.Add("!!!")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := store.ParseCursor(s)
		if err != nil {
			require.ErrorIs(t, err, rackcloud.ErrInvalid)
			return
		}
		if s != "" {
			require.True(t, store.ValidID(c.ID))
			again, err := store.ParseCursor(c.Encode())
			require.NoError(t, err)
			require.Equal(t, c, again)
		}
	})
}
