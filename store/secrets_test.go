package store_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// sealV0 seals the way the single-key sealer of earlier versions did.
func sealV0(t *testing.T, key []byte, plain, aad string) string {
	block, err := aes.NewCipher(key)
	require.NoError(t, err)
	aead, err := cipher.NewGCM(block)
	require.NoError(t, err)
	nonce := bytes.Repeat([]byte{9}, aead.NonceSize())
	return "rcs0:" + base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(plain), []byte(aad)))
}

func TestSealerRingAndKeyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys")
	_, err := store.OpenSealerFile(path, false)
	require.ErrorIs(t, err, os.ErrNotExist, "a missing key file is not made unless asked")
	s1, err := store.OpenSealerFile(path, true)
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	s2, err := store.OpenSealerFile(path, true)
	require.NoError(t, err)
	require.Equal(t, s1.Primary(), s2.Primary(), "the key file is kept")

	sealed, err := s1.Seal("hunter2", []byte("host-a"))
	require.NoError(t, err)
	require.Equal(t, s1.Primary(), store.SealedKeyID(sealed))
	require.NotContains(t, sealed, hex.EncodeToString([]byte("hunter2")))

	// A newer ring opens the older key's values and the v0 form; a ring
	// without the key says which key it lacks.
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	old, err := store.NewSealer(oldKey)
	require.NoError(t, err)
	byOld, err := old.Seal("pw-old", []byte("h"))
	require.NoError(t, err)
	ring, err := store.NewSealer(newKey, oldKey)
	require.NoError(t, err)
	require.Equal(t, store.KeyID(newKey), ring.Primary())
	got, err := ring.Open(byOld, []byte("h"))
	require.NoError(t, err)
	require.Equal(t, "pw-old", got)
	got, err = ring.Open(sealV0(t, oldKey, "pw-v0", "h"), []byte("h"))
	require.NoError(t, err)
	require.Equal(t, "pw-v0", got)
	newOnly, err := store.NewSealer(newKey)
	require.NoError(t, err)
	_, err = newOnly.Open(byOld, []byte("h"))
	require.ErrorIs(t, err, store.ErrUnknownKey)
	require.Contains(t, err.Error(), store.KeyID(oldKey))
	_, err = ring.Open(byOld, []byte("other"))
	require.ErrorIs(t, err, store.ErrUnsealable, "bound to its record")
	_, err = ring.Open(byOld[:len(byOld)-2]+"AA", []byte("h"))
	require.ErrorIs(t, err, store.ErrUnsealable, "tampered")

	for name, body := range map[string]string{"empty": "# only a comment\n", "short": "abcd\n", "not hex": strings.Repeat("zz", 32)} {
		bad := filepath.Join(t.TempDir(), "bad")
		require.NoError(t, os.WriteFile(bad, []byte(body), 0o600))
		_, err := store.OpenSealerFile(bad, true)
		require.Error(t, err, name)
	}
}

// Rotation reseals every stored BMC password under a new key in one
// transaction; a server that opened the key file before the rotation
// still opens them (it re-reads the file), and --prune leaves only the
// new key.
func TestRotateSecretKey(t *testing.T) {
	defer store.SetSealerReloadEvery(0)()
	ctx := context.Background()
	pool := pgtest.DB(t)
	path := filepath.Join(t.TempDir(), "keys")
	running, err := store.OpenSealerFile(path, true) // a server started before the rotation
	require.NoError(t, err)
	oldID := running.Primary()

	ids := map[string]string{} // host ID -> password
	for i, pw := range []string{"pw-a", "pw-b", "pw-c"} {
		h, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "h" + string(rune('a'+i))}})
		require.NoError(t, err)
		sealed, err := running.Seal(pw, []byte(h.ID))
		require.NoError(t, err)
		require.NoError(t, store.SetHostBMCSecret(ctx, pool, h.ID, sealed))
		ids[h.ID] = pw
	}
	before := map[string]int64{}
	generation := map[string]int64{}
	for id := range ids {
		h, err := store.GetHost(ctx, pool, id)
		require.NoError(t, err)
		before[id] = h.Version
		var g int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT bmc_generation FROM hosts WHERE id = $1::uuid`, id).Scan(&g))
		generation[id] = g
	}

	rot, err := store.RotateSecretKey(ctx, pool, path, false)
	require.NoError(t, err)
	require.Equal(t, 3, rot.Resealed)
	require.NotEqual(t, oldID, rot.NewKey)
	keys, err := store.LoadSecretKeys(path)
	require.NoError(t, err)
	require.Len(t, keys, 2, "the old key stays until prune")
	require.Equal(t, rot.NewKey, store.KeyID(keys[0]))
	for id, pw := range ids {
		sealed, err := store.HostBMCSecret(ctx, pool, id)
		require.NoError(t, err)
		require.Equal(t, rot.NewKey, store.SealedKeyID(sealed))
		got, err := running.Open(sealed, []byte(id))
		require.NoError(t, err, "a server with the old ring re-reads the file")
		require.Equal(t, pw, got)
		h, err := store.GetHost(ctx, pool, id)
		require.NoError(t, err)
		require.Equal(t, before[id], h.Version, "resealing is not an operator's change: the ETag stays")
		var g int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT bmc_generation FROM hosts WHERE id = $1::uuid`, id).Scan(&g))
		require.Equal(t, generation[id], g, "resealing is not a credentials change: in-flight BMC polls stay valid")
	}
	// A real password change in the same way still is one.
	for id := range ids {
		sealed, err := running.Seal("new-password", []byte(id))
		require.NoError(t, err)
		require.NoError(t, store.SetHostBMCSecret(ctx, pool, id, sealed))
		var g int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT bmc_generation FROM hosts WHERE id = $1::uuid`, id).Scan(&g))
		require.Greater(t, g, generation[id])
		sealed, err = running.Seal(ids[id], []byte(id))
		require.NoError(t, err)
		require.NoError(t, store.SetHostBMCSecret(ctx, pool, id, sealed))
		break
	}

	// One secret that does not open stops the rotation before anything
	// changes in the database.
	var victim string
	for id := range ids {
		victim = id
		break
	}
	require.NoError(t, store.SetHostBMCSecret(ctx, pool, victim, "rcs1:000000000000:AAAA"))
	snapshot := map[string]string{}
	for id := range ids {
		snapshot[id], _ = store.HostBMCSecret(ctx, pool, id)
	}
	_, err = store.RotateSecretKey(ctx, pool, path, true)
	require.ErrorContains(t, err, victim)
	for id := range ids {
		s, _ := store.HostBMCSecret(ctx, pool, id)
		require.Equal(t, snapshot[id], s, "nothing resealed")
	}
	keys, err = store.LoadSecretKeys(path)
	require.NoError(t, err)
	require.Len(t, keys, 3, "a failed rotation leaves its new key in the file, harmlessly, and prunes nothing")

	require.NoError(t, store.SetHostBMCSecret(ctx, pool, victim, ""))
	delete(ids, victim)
	rot, err = store.RotateSecretKey(ctx, pool, path, true)
	require.NoError(t, err)
	require.Equal(t, 2, rot.Resealed)
	require.Len(t, rot.Retired, 3)
	keys, err = store.LoadSecretKeys(path)
	require.NoError(t, err)
	require.Len(t, keys, 1, "prune leaves the new key only")
	for id, pw := range ids {
		sealed, _ := store.HostBMCSecret(ctx, pool, id)
		got, err := running.Open(sealed, []byte(id))
		require.NoError(t, err)
		require.Equal(t, pw, got)
	}
}
