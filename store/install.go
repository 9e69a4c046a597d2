package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostca"
	"github.com/rackcloud/rackcloud/hostconfig"
)

// ErrNoSealer says this server has no secret key to seal or open what
// must be kept secret (--secret-key-file).
var ErrNoSealer = errors.New("this server has no secret key (--secret-key-file) to seal host secrets")

// ErrNoInstall says a host has no install record (it is not being, or
// was never, provisioned by this control plane).
var ErrNoInstall = fmt.Errorf("%w: no install record", rackcloud.ErrNotFound)

// HostCA returns the host CA and rackcloud's client certificate, creating
// them the first time (concurrent first callers agree on one).
func HostCA(ctx context.Context, q Querier, s *Sealer) (*hostca.CA, hostca.Pair, error) {
	if s == nil {
		return nil, hostca.Pair{}, ErrNoSealer
	}
	load := func() (*hostca.CA, hostca.Pair, error) {
		var certPEM, keySealed, clientPEM, clientSealed string
		err := q.QueryRow(ctx, `SELECT cert_pem, key_sealed, client_cert_pem, client_key_sealed FROM host_ca WHERE id = 1`).
			Scan(&certPEM, &keySealed, &clientPEM, &clientSealed)
		if err != nil {
			return nil, hostca.Pair{}, MapError(err)
		}
		key, err := s.Open(keySealed, []byte(aadHostCAKey+"1"))
		if err != nil {
			return nil, hostca.Pair{}, fmt.Errorf("host CA key: %w", err)
		}
		ckey, err := s.Open(clientSealed, []byte(aadHostCAClient+"1"))
		if err != nil {
			return nil, hostca.Pair{}, fmt.Errorf("client key: %w", err)
		}
		ca, err := hostca.Load(hostca.Pair{Cert: certPEM, Key: key})
		return ca, hostca.Pair{Cert: clientPEM, Key: ckey}, err
	}
	ca, client, err := load()
	if !errors.Is(err, rackcloud.ErrNotFound) {
		return ca, client, err
	}
	now := time.Now()
	if ca, err = hostca.New(now); err != nil {
		return nil, client, err
	}
	if client, err = ca.Client(now); err != nil {
		return nil, client, err
	}
	keySealed, err := s.Seal(ca.Key, []byte(aadHostCAKey+"1"))
	if err != nil {
		return nil, client, err
	}
	clientSealed, err := s.Seal(client.Key, []byte(aadHostCAClient+"1"))
	if err != nil {
		return nil, client, err
	}
	if _, err := q.Exec(ctx, `INSERT INTO host_ca (cert_pem, key_sealed, client_cert_pem, client_key_sealed)
		VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`, ca.Cert, keySealed, client.Cert, clientSealed); err != nil {
		return nil, client, MapError(err)
	}
	return load()
}

// HostInstall is what an install hands the installer: the image and the
// host's configuration (its token and TLS key included).
type HostInstall struct {
	TaskID  string
	ImageID string
	Config  hostconfig.Config
}

// SaveHostInstall records the install of a host (replacing an earlier
// one): its config sealed, its token's hash.
func SaveHostInstall(ctx context.Context, q Querier, s *Sealer, hostID string, in HostInstall) error {
	if s == nil {
		return ErrNoSealer
	}
	js, err := json.Marshal(in.Config)
	if err != nil {
		return err
	}
	sealed, err := s.Seal(string(js), []byte(aadHostInstall+hostID))
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(in.Config.Token))
	_, err = q.Exec(ctx, `INSERT INTO host_installs (host_id, task_id, image_id, token_sha256, config_sealed)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (host_id) DO UPDATE SET task_id = $2, image_id = $3, token_sha256 = $4,
		config_sealed = $5, created_at = now()`, hostID, in.TaskID, in.ImageID, sum[:], sealed)
	return MapError(err)
}

// GetHostInstall opens a host's install record.
func GetHostInstall(ctx context.Context, q Querier, s *Sealer, hostID string) (HostInstall, error) {
	var in HostInstall
	if !ValidID(hostID) {
		return in, ErrNoInstall
	}
	if s == nil {
		return in, ErrNoSealer
	}
	var sealed string
	err := q.QueryRow(ctx, `SELECT task_id::text, image_id::text, config_sealed FROM host_installs WHERE host_id = $1`, hostID).
		Scan(&in.TaskID, &in.ImageID, &sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return in, ErrNoInstall
	}
	if err != nil {
		return in, MapError(err)
	}
	js, err := s.Open(sealed, []byte(aadHostInstall+hostID))
	if err != nil {
		return in, fmt.Errorf("host config: %w", err)
	}
	return in, json.Unmarshal([]byte(js), &in.Config)
}

// HostTokenSHA256 is the SHA-256 of a host's token, nil when it has none.
func HostTokenSHA256(ctx context.Context, q Querier, hostID string) ([]byte, error) {
	var sum []byte
	err := q.QueryRow(ctx, `SELECT token_sha256 FROM host_installs WHERE host_id = $1`, hostID).Scan(&sum)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return sum, MapError(err)
}

// CheckHostToken reports whether token is host hostID's.
func CheckHostToken(ctx context.Context, q Querier, hostID, token string) (bool, error) {
	want, err := HostTokenSHA256(ctx, q, hostID)
	if err != nil || want == nil {
		return false, err
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want) == 1, nil
}

// RecordHeartbeat notes that host hostID's agent called in at at (the
// newest time wins). It does not bump the host's version.
func RecordHeartbeat(ctx context.Context, q Querier, hostID string, at time.Time) error {
	_, err := q.Exec(ctx, `UPDATE hosts SET last_heartbeat = greatest(last_heartbeat, $2) WHERE id = $1`, hostID, at)
	return MapError(err)
}

// SetHostEndpoint stores where host hostID's role daemon answers.
func SetHostEndpoint(ctx context.Context, q Querier, hostID, endpoint string) error {
	tag, err := q.Exec(ctx, `UPDATE hosts SET endpoint = $2, version = version + 1, updated_at = now() WHERE id = $1`, hostID, endpoint)
	if err == nil && tag.RowsAffected() == 0 {
		return rackcloud.ErrNotFound
	}
	return MapError(err)
}

// SetHostRole records the role and image a host is being provisioned
// with.
func SetHostRole(ctx context.Context, q Querier, hostID string, role rackcloud.HostRole, imageID string) error {
	tag, err := q.Exec(ctx, `UPDATE hosts SET role = $2, image_id = $3::uuid, version = version + 1, updated_at = now()
		WHERE id = $1 AND (role, COALESCE(image_id::text, '')) IS DISTINCT FROM ($2, $3)`, hostID, string(role), nullable(imageID))
	if err == nil && tag.RowsAffected() == 0 {
		_, err = GetHost(ctx, q, hostID)
	}
	return MapError(err)
}

// SetHostMaintenance sets whether new guests are kept off a host.
func SetHostMaintenance(ctx context.Context, q Querier, hostID string, on bool) error {
	_, err := q.Exec(ctx, `UPDATE hosts SET maintenance = $2, version = version + 1, updated_at = now()
		WHERE id = $1 AND maintenance IS DISTINCT FROM $2`, hostID, on)
	return MapError(err)
}

// ActiveGuestsOn counts the guests placed on a host that are not stopped,
// failed or gone: what a drain waits for.
func ActiveGuestsOn(ctx context.Context, q Querier, hostID string) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM guests WHERE host_id = $1 AND state IN ('pending', 'creating', 'running', 'deleting')`,
		hostID).Scan(&n)
	return n, MapError(err)
}

// ClearHostInstall forgets what a wiped host was installed with: its role,
// image, endpoint and install record (its host token no longer calls in).
func ClearHostInstall(ctx context.Context, q Querier, hostID string) error {
	if _, err := q.Exec(ctx, `DELETE FROM host_installs WHERE host_id = $1`, hostID); err != nil {
		return MapError(err)
	}
	_, err := q.Exec(ctx, `UPDATE hosts SET role = '', image_id = NULL, endpoint = '', version = version + 1, updated_at = now()
		WHERE id = $1 AND (role <> '' OR image_id IS NOT NULL OR endpoint <> '')`, hostID)
	return MapError(err)
}
