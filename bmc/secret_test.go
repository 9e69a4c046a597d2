package bmc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
