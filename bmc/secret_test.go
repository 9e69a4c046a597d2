package bmc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

const pw = "hunter2-s3cr3t"

// TestSecretNeverPrints checks every way a secret could leave the process
// by accident: fmt verbs, slog handlers, JSON and text marshalling, errors,
// and endpoints that hold it.
func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret(pw)
	ep := Endpoint{Protocol: rackcloud.BMCIPMI, Address: "10.0.0.1:623", Username: "admin", Password: s}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%10s", "%-10v"} {
		outs = append(outs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, ep), fmt.Sprintf(verb, &ep), fmt.Sprintf(verb, []Secret{s}))
	}
	outs = append(outs, fmt.Sprint(s), fmt.Sprintln(s, ep), s.String(), ep.String(), fmt.Errorf("open %v: %w", ep, errors.New("x")).Error())

	j, err := json.Marshal(map[string]any{"password": s, "ep": ep})
	require.NoError(t, err)
	outs = append(outs, string(j))
	txt, err := s.MarshalText()
	require.NoError(t, err)
	outs = append(outs, string(txt))

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("login", "password", s, "ep", ep, "any", any(s), slog.Any("group", map[string]any{"pw": s}))
		l.With("pw", s).Info("with")
	}
	outs = append(outs, buf.String())

	for _, o := range outs {
		require.NotContains(t, o, pw)
		require.NotContains(t, o, fmt.Sprintf("%x", pw))
	}
	require.Contains(t, buf.String(), Redacted)
	require.Equal(t, pw, s.Reveal())
}

func TestSecretJSONIn(t *testing.T) {
	var in struct{ Password Secret }
	require.NoError(t, json.Unmarshal([]byte(`{"Password":"abc"}`), &in))
	require.Equal(t, "abc", in.Password.Reveal())
	require.True(t, in.Password.Equal(NewSecret("abc")))
	require.False(t, in.Password.Equal(NewSecret("abd")))
	// A redacted document read back must not become the password.
	require.Error(t, json.Unmarshal([]byte(`{"Password":"[REDACTED]"}`), &in))
	require.Error(t, json.Unmarshal([]byte(`{"Password":42}`), &in))
	require.Equal(t, "abc", in.Password.Reveal(), "a failed unmarshal keeps the old value")
	require.True(t, Secret{}.IsZero())
}

func TestRedactErrors(t *testing.T) {
	s := NewSecret(pw)
	err := redactErr(fmt.Errorf("ipmitool -P %s failed", pw), s)
	require.NotContains(t, err.Error(), pw)
	require.Contains(t, err.Error(), "[REDACTED]")
	e := &Error{BMC: "ipmi://x", Op: "open", Kind: ErrAuth, Err: err}
	require.NotContains(t, e.Error(), pw)
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		require.NotContains(t, u.Error(), pw)
	}
	plain := errors.New("no secret here")
	require.Same(t, plain, redactErr(plain, s))
	require.NotContains(t, redact("pw=x", NewSecret("x")), "[REDACTED]", "too short to redact safely")
}

func TestKeyring(t *testing.T) {
	k1, err := GenerateKey("k1")
	require.NoError(t, err)
	k2, err := GenerateKey("k2")
	require.NoError(t, err)
	old, err := ParseKeyring(k1)
	require.NoError(t, err)
	require.Equal(t, "k1", old.Primary())

	sealed, err := old.Seal(NewSecret(pw), []byte("host-1"))
	require.NoError(t, err)
	require.NotContains(t, sealed, pw)
	require.True(t, strings.HasPrefix(sealed, "rcs1:k1:"))
	again, err := old.Seal(NewSecret(pw), []byte("host-1"))
	require.NoError(t, err)
	require.NotEqual(t, sealed, again, "a fresh nonce every time")

	got, err := old.Open(sealed, []byte("host-1"))
	require.NoError(t, err)
	require.Equal(t, pw, got.Reveal())

	// Bound to its record, tamper-evident.
	_, err = old.Open(sealed, []byte("host-2"))
	require.ErrorIs(t, err, ErrDecrypt)
	tampered := sealed[:len(sealed)-2] + "AA"
	if tampered == sealed {
		tampered = sealed[:len(sealed)-2] + "BB"
	}
	_, err = old.Open(tampered, []byte("host-1"))
	require.ErrorIs(t, err, ErrDecrypt)
	_, err = old.Open(strings.Replace(sealed, ":k1:", ":k2:", 1), []byte("host-1"))
	require.ErrorIs(t, err, ErrUnknownKey)
	for _, bad := range []string{"", "plain", "rcs1:k1", "rcs1:k1:!!!", "rcs2:k1:AAAA", "rcs1:k1:AAAA"} {
		_, err = old.Open(bad, nil)
		require.Error(t, err, bad)
	}

	// Rotation: new key first; old values still open; Reseal moves them.
	rotated, err := ParseKeyring(k2 + "," + k1)
	require.NoError(t, err)
	require.True(t, rotated.NeedsReseal(sealed))
	got, err = rotated.Open(sealed, []byte("host-1"))
	require.NoError(t, err)
	require.Equal(t, pw, got.Reveal())
	resealed, changed, err := rotated.Reseal(sealed, []byte("host-1"))
	require.NoError(t, err)
	require.True(t, changed)
	id, err := KeyID(resealed)
	require.NoError(t, err)
	require.Equal(t, "k2", id)
	same, changed, err := rotated.Reseal(resealed, []byte("host-1"))
	require.NoError(t, err)
	require.False(t, changed)
	require.Equal(t, resealed, same)
	_, _, err = rotated.Reseal(sealed, []byte("host-9"))
	require.ErrorIs(t, err, ErrDecrypt, "reseal never launders a value for another record")

	// Once the old key is gone, only resealed values open.
	newOnly, err := ParseKeyring(k2)
	require.NoError(t, err)
	_, err = newOnly.Open(sealed, []byte("host-1"))
	require.ErrorIs(t, err, ErrUnknownKey)
	got, err = newOnly.Open(resealed, []byte("host-1"))
	require.NoError(t, err)
	require.Equal(t, pw, got.Reveal())
}

func TestParseKeyringRefuses(t *testing.T) {
	for name, spec := range map[string]string{
		"empty":     "",
		"no id":     "c2hvcnQ=",
		"short key": "k=c2hvcnQ=",
		"bad b64":   "k=***",
		"bad id":    "k:1=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"dup":       "k=AAAAAAAAAAAAAAAAAAAAAA==,k=AAAAAAAAAAAAAAAAAAAAAA==",
	} {
		_, err := ParseKeyring(spec)
		require.ErrorIs(t, err, rackcloud.ErrInvalid, name)
	}
	k, err := ParseKeyring(" k-1 = AAAAAAAAAAAAAAAAAAAAAA , k2=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	require.NoError(t, err)
	require.Equal(t, "k-1", k.Primary())
}
