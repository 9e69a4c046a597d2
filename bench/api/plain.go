package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// plainHandler serves the two benchmarked operations with net/http alone,
// doing the same database work as the API: the same token lookup, the
// same keyset query, and for a guest the same transaction (project and
// image checks, insert charged to the quota, task submit, task owner,
// audit event).
func plainHandler(pool *pgxpool.Pool, engine *tasks.Engine) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/hosts", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := authenticate(w, r, pool)
		if !ok {
			return
		}
		if tok.Role != rackcloud.RoleAdmin && tok.Role != rackcloud.RoleOperator {
			fail(w, 403, "forbidden")
			return
		}
		q := r.URL.Query()
		limit := 100
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 1000 {
				fail(w, 422, "limit must be 1..1000")
				return
			}
			limit = n
		}
		cur, err := store.ParseCursor(q.Get("cursor"))
		if err != nil {
			fail(w, 422, "malformed cursor")
			return
		}
		hosts, err := store.ListHosts(r.Context(), pool, store.Filter{After: cur, Limit: limit + 1, State: q.Get("state")})
		if err != nil {
			fail(w, 500, err.Error())
			return
		}
		var page struct {
			Items      []rackcloud.Host `json:"items"`
			NextCursor string           `json:"next_cursor,omitempty"`
		}
		if len(hosts) > limit {
			hosts = hosts[:limit]
			last := hosts[len(hosts)-1]
			page.NextCursor = store.Cursor{Name: last.Name, ID: last.ID}.Encode()
			w.Header().Set("Link", "</v1/hosts?"+url.Values{"limit": {strconv.Itoa(limit)}, "cursor": {page.NextCursor}}.Encode()+`>; rel="next"`)
		}
		page.Items = hosts
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	})
	mux.HandleFunc("POST /v1/guests", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := authenticate(w, r, pool)
		if !ok {
			return
		}
		var b struct {
			ProjectID string `json:"project_id"`
			Name      string `json:"name"`
			Kind      string `json:"kind"`
			Flavor    struct {
				VCPU      int   `json:"vcpu"`
				MemoryMiB int64 `json:"memory_mib"`
				DiskGiB   int64 `json:"disk_gib"`
			} `json:"flavor"`
			ImageID string            `json:"image_id"`
			Labels  map[string]string `json:"labels"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			fail(w, 422, err.Error())
			return
		}
		if err := validGuest(b.ProjectID, b.Name, b.Kind, b.ImageID, b.Flavor.VCPU, b.Flavor.MemoryMiB, b.Flavor.DiskGiB); err != nil {
			fail(w, 422, err.Error())
			return
		}
		if tok.Role == rackcloud.RoleViewer || (tok.Role == rackcloud.RoleMember && !contains(tok.ProjectIDs, b.ProjectID)) {
			fail(w, 403, "forbidden")
			return
		}
		reqID := newRequestID()
		var info *tasks.Info
		err := store.InTx(r.Context(), pool, func(tx pgx.Tx) error {
			if _, err := store.GetProject(r.Context(), tx, b.ProjectID); err != nil {
				return err
			}
			if _, err := store.GetImage(r.Context(), tx, b.ImageID); err != nil {
				return err
			}
			id := store.NewID()
			target := "guest/" + id
			var err error
			info, err = engine.Submit(r.Context(), tx, tasks.Submission{Kind: "guest.create", Target: target, Params: map[string]string{"guest_id": id}})
			if err != nil {
				return err
			}
			if err := store.SetTaskOwner(r.Context(), tx, info.ID, b.ProjectID, "user:"+tok.UserName); err != nil {
				return err
			}
			if err := store.WriteAudit(r.Context(), tx, store.AuditRecord{AuditEvent: rackcloud.AuditEvent{Actor: "user:" + tok.UserName,
				Action: "createGuest", Target: target, Outcome: store.OutcomeSuccess, RequestID: reqID},
				TokenID: tok.ID, ProjectID: b.ProjectID, Detail: "task " + info.ID}); err != nil {
				return err
			}
			_, err = store.CreateGuest(r.Context(), tx, rackcloud.Guest{Meta: rackcloud.Meta{ID: id, Name: b.Name, Labels: b.Labels},
				ProjectID: b.ProjectID, Kind: rackcloud.GuestKind(b.Kind), ImageID: b.ImageID, HA: rackcloud.HANone,
				Flavor: rackcloud.Resources{CPUCores: b.Flavor.VCPU, MemoryMiB: b.Flavor.MemoryMiB, DiskGiB: b.Flavor.DiskGiB}})
			return err
		})
		if err != nil {
			code := 500
			switch {
			case errors.Is(err, store.ErrQuotaExceeded):
				code = 403
			case errors.Is(err, rackcloud.ErrConflict):
				code = 409
			case errors.Is(err, rackcloud.ErrNotFound), errors.Is(err, rackcloud.ErrInvalid):
				code = 422
			}
			fail(w, code, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/v1/tasks/"+info.ID)
		w.Header().Set("X-Request-ID", reqID)
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(info)
	})
	return mux
}

func authenticate(w http.ResponseWriter, r *http.Request, pool *pgxpool.Pool) (store.TokenRecord, bool) {
	scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "bearer") {
		fail(w, 401, "missing bearer token")
		return store.TokenRecord{}, false
	}
	tok, err := store.Authenticate(r.Context(), pool, secret, timeNow())
	if err != nil {
		fail(w, 401, "unknown or expired token")
		return tok, false
	}
	return tok, true
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

func validGuest(project, name, kind, image string, vcpu int, mem, disk int64) error {
	switch {
	case !uuidRE.MatchString(project) || !uuidRE.MatchString(image):
		return errors.New("malformed ID")
	case !nameRE.MatchString(name):
		return errors.New("bad name")
	case kind != "vm" && kind != "container" && kind != "bm":
		return errors.New("bad kind")
	case vcpu < 1 || vcpu > 1024 || mem < 64 || mem > 16777216 || disk < 0 || disk > 1048576:
		return errors.New("flavor out of range")
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"status":%d,"detail":%q}`, code, msg)
}

func timeNow() time.Time { return time.Now() }
