package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Domain errors map to one status and one problem type each.
func TestProblemMapping(t *testing.T) {
	a := &API{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cases := map[string]struct {
		err    error
		status int
		typ    string
	}{
		"not found":        {fmt.Errorf("host x: %w", rackcloud.ErrNotFound), 404, ProblemNotFound},
		"conflict":         {fmt.Errorf("%w: duplicate", rackcloud.ErrConflict), 409, ProblemConflict},
		"stale":            {fmt.Errorf("update: %w", store.ErrStaleVersion), 412, ProblemPrecondition},
		"quota":            {fmt.Errorf("%w: vcpu", store.ErrQuotaExceeded), 403, ProblemQuota},
		"invalid":          {fmt.Errorf("%w: bad", rackcloud.ErrInvalid), 422, ProblemValidation},
		"no worker":        {fmt.Errorf("%w: %w \"guest.create\"", rackcloud.ErrInvalid, tasks.ErrUnknownKind), 501, ProblemNotImplemented},
		"unknown, said":    {fmt.Errorf("%w: unknown task kind \"x\"", rackcloud.ErrInvalid), 422, ProblemValidation},
		"internal":         {errors.New("connection reset"), 500, ProblemInternal},
		"db refused":       {fmt.Errorf("get host: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), 503, ProblemUnavailable},
		"db shutting down": {fmt.Errorf("list: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}), 503, ProblemUnavailable},
		"db constraint":    {fmt.Errorf("insert: %w", &pgconn.PgError{Code: "23514", Message: "check"}), 500, ProblemInternal},
		"db refuses NUL":   {fmt.Errorf("insert: %w", &pgconn.PgError{Code: "22P05", Message: "unsupported Unicode escape sequence"}), 422, ProblemValidation},
		"db refuses bytes": {fmt.Errorf("insert: %w", &pgconn.PgError{Code: "22021", Message: `invalid byte sequence for encoding "UTF8": 0x00`}), 422, ProblemValidation},
		"named not found":  {notFound(fmt.Errorf("get: %w", rackcloud.ErrNotFound), "region", "x"), 404, ProblemNotFound},
		"already problem":  {huma.Error403Forbidden("no"), 403, ProblemForbidden},
		"canceled":         {context.Canceled, 499, "about:blank"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var m *huma.ErrorModel
			require.True(t, errors.As(a.problem(c.err), &m))
			require.Equal(t, c.status, m.Status)
			require.Equal(t, c.typ, m.Type)
			if c.status == 500 {
				require.NotContains(t, m.Detail, "connection reset", "internals stay in the log")
			}
			if c.status == 501 {
				require.NotContains(t, m.Detail, "invalid", "a 501 says what is not implemented, not that the request is invalid")
			}
		})
	}
	for _, s := range []int{http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge,
		http.StatusUnauthorized, http.StatusServiceUnavailable} {
		require.NotEqual(t, "about:blank", problemType(s), s)
	}
}

func FuzzLabelSelector(f *testing.F) {
	for _, s := range []string{"a=b", "a=b,c=d", "", "=", "a=", "a==b", "a=b,,c=d", "k/x.y=v:w@z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sel string) {
		flt, err := ListParams{Limit: 10, LabelSelector: sel}.filter()
		if err != nil {
			var m *huma.ErrorModel
			require.True(t, errors.As(err, &m))
			require.Equal(t, 422, m.Status)
			return
		}
		// Every accepted pair is a valid label, so it could be stored.
		require.NoError(t, checkLabels("q", flt.Labels))
	})
}
