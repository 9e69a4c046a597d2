package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidID reports whether id is a well-formed UUID.
func ValidID(id string) bool { return uuidRE.MatchString(id) }

// uuidArg passes an ID to "id = $1::uuid" (which uses the primary key,
// where "id::text = $1" scans the table): a malformed ID becomes the nil
// UUID, which no row has, so it matches nothing instead of failing the cast.
func uuidArg(id string) string {
	if ValidID(id) {
		return id
	}
	return "00000000-0000-0000-0000-000000000000"
}

// MaxPage is the largest page a list query returns.
const MaxPage = 1000

// Cursor is a keyset position: lists are ordered by (name, id), and a page
// starts after its cursor.
type Cursor struct {
	Name string
	ID   string
}

// IsZero reports whether c is the start of the list.
func (c Cursor) IsZero() bool { return c.Name == "" && c.ID == "" }

// Encode returns the cursor as an opaque URL-safe string.
func (c Cursor) Encode() string {
	if c.IsZero() {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(c.Name + "\x00" + c.ID))
}

// ParseCursor decodes a cursor made by Encode; "" is the start. A cursor
// that is not one of ours is rackcloud.ErrInvalid.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: malformed cursor", rackcloud.ErrInvalid)
	}
	name, id, ok := strings.Cut(string(b), "\x00")
	if !ok || !uuidRE.MatchString(id) {
		return Cursor{}, fmt.Errorf("%w: malformed cursor", rackcloud.ErrInvalid)
	}
	return Cursor{Name: name, ID: id}, nil
}

// Filter narrows a list query. Empty fields do not filter.
type Filter struct {
	// After is the keyset cursor; Limit caps the rows returned (0 means
	// MaxPage).
	After Cursor
	Limit int
	// Labels selects rows whose labels contain all these pairs.
	Labels map[string]string
	// State selects rows in this lifecycle state (hosts, guests).
	State string
	// Parent selects rows under this parent (a zone's region, a rack's
	// zone, a host's rack, a guest's project...).
	Parent string
	// Projects, when not nil, restricts project-owned rows to these
	// projects (an empty non-nil slice selects nothing).
	Projects []string
	// MAC selects the host with this MAC (hosts only; normalized form).
	MAC string
}

// where collects SQL conditions and their arguments.
type where struct {
	conds []string
	args  []any
}

// add appends a condition; each "$?" in cond takes the next of vs.
func (w *where) add(cond string, vs ...any) {
	for _, v := range vs {
		w.args = append(w.args, v)
		cond = strings.Replace(cond, "$?", fmt.Sprintf("$%d", len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// listSpec names the columns a list query filters on; empty ones do not
// apply to the table.
type listSpec struct {
	table, cols  string
	alias        string // the table's alias in from, "" for none
	from         string // FROM clause; table when empty
	stateCol     string
	parentCol    string
	projectCol   string
	extraFilters func(*where)
	// keyCol orders the list instead of name (a unique column, with id as
	// the tie-break); keyCast casts the cursor's Name to its type.
	keyCol, keyCast string
}

func listRows[T any](ctx context.Context, q Querier, s listSpec, f Filter, scan func(pgx.Row) (T, error)) ([]T, error) {
	var w where
	p := ""
	if s.alias != "" {
		p = s.alias + "."
	}
	key, cast := "name", ""
	if s.keyCol != "" {
		key, cast = s.keyCol, "::"+s.keyCast
	}
	if !f.After.IsZero() {
		w.add("("+p+key+", "+p+"id) > ($?"+cast+", $?::uuid)", f.After.Name, f.After.ID)
	}
	if len(f.Labels) > 0 {
		w.add(p+"labels @> $?", rackcloud.Labels(f.Labels))
	}
	if f.State != "" && s.stateCol != "" {
		w.add(p+s.stateCol+" = $?", f.State)
	}
	if f.Parent != "" && s.parentCol != "" {
		if !uuidRE.MatchString(f.Parent) {
			return []T{}, nil
		}
		w.add(p+s.parentCol+" = $?::uuid", f.Parent)
	}
	if f.Projects != nil && s.projectCol != "" {
		w.add(p+s.projectCol+"::text = ANY($?)", f.Projects)
	}
	if s.extraFilters != nil {
		s.extraFilters(&w)
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxPage+1 {
		limit = MaxPage
	}
	from := s.from
	if from == "" {
		from = s.table
	}
	w.args = append(w.args, limit)
	sql := `SELECT ` + s.cols + ` FROM ` + from + w.sql() +
		fmt.Sprintf(` ORDER BY %s%s, %sid LIMIT $%d`, p, key, p, len(w.args))
	rows, err := q.Query(ctx, sql, w.args...)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, MapError(rows.Err())
}

// deleteRow deletes the row with id from table if its version is still
// version (0 means any version).
func deleteRow(ctx context.Context, q Querier, table, id string, version int64) error {
	if !uuidRE.MatchString(id) {
		return fmt.Errorf("%w: %s %s", rackcloud.ErrNotFound, table, id)
	}
	tag, err := q.Exec(ctx, `DELETE FROM `+table+` WHERE id = $1::uuid AND ($2 = 0 OR version = $2)`, id, version)
	if err != nil {
		return MapError(err)
	}
	if tag.RowsAffected() == 0 {
		return versionError(ctx, q, table, id, pgx.ErrNoRows)
	}
	return nil
}

func labelsOrEmpty(l rackcloud.Labels) rackcloud.Labels {
	if l == nil {
		return rackcloud.Labels{}
	}
	return l
}
