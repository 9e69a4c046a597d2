// Package hostconfig is the configuration an installed host starts with:
// who it is, how to call in, and its TLS identity. The installer writes it
// into a small raw partition of the host's disk (MBR type 0xda, "non-FS
// data"), so it needs no file system support; the host agent reads it at
// every boot and lays its files out (Setup) before the role's daemon
// starts.
//
// On disk: Magic (8 bytes), the JSON's length (4 bytes, big-endian), the
// JSON, and the JSON's SHA-256 (32 bytes); the rest of the partition is
// zero.
package hostconfig

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rackcloud/rackcloud"
)

// Magic starts an encoded configuration.
const Magic = "RCHOSTv1"

// PartitionType is the MBR type of the configuration partition.
const PartitionType = 0xda

// MaxSize bounds an encoded configuration (the partition is 1 MiB).
const MaxSize = 1 << 20

// Files an installed host's configuration is laid out into (relative to
// the root), which the images' daemons are configured to read.
const (
	FileConfig = "etc/rackcloud/host.json"
	FileCA     = "etc/rackcloud/tls/ca.pem"
	FileCert   = "etc/rackcloud/tls/cert.pem"
	FileKey    = "etc/rackcloud/tls/key.pem"
	// libvirtd's TLS files (kvm hosts): the same CA, certificate and key.
	FileLibvirtCA   = "etc/pki/CA/cacert.pem"
	FileLibvirtCert = "etc/pki/libvirt/servercert.pem"
	FileLibvirtKey  = "etc/pki/libvirt/private/serverkey.pem"
	FileHostname    = "etc/hostname"
)

// Ports the role daemons listen on with mutual TLS.
const (
	DockerTLSPort  = 2376
	LibvirtTLSPort = 16514
)

// Config is an installed host's configuration.
type Config struct {
	Version  int                `json:"version"`
	HostID   string             `json:"host_id"`
	Hostname string             `json:"hostname"`
	Role     rackcloud.HostRole `json:"role"`
	// MAC is the host's provisioning NIC.
	MAC string `json:"mac"`
	// BootURL is the boot service's base URL the host agent calls in to
	// (POST {BootURL}/boot/{MAC}/heartbeat).
	BootURL string `json:"boot_url"`
	// Token is the host's token, sent as "Authorization: Bearer".
	Token string `json:"token"`
	// CA is the PEM certificate of rackcloud's host CA: it issued Cert,
	// and the daemons accept clients whose certificates it signed.
	CA string `json:"ca,omitempty"`
	// Cert and Key are the host's PEM server certificate and key.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// HeartbeatSeconds is how often the host agent calls in.
	HeartbeatSeconds int `json:"heartbeat_seconds,omitempty"`
}

// Validate checks what every host needs.
func (c Config) Validate() error {
	switch {
	case c.HostID == "":
		return errors.New("host config: no host_id")
	case c.MAC == "":
		return errors.New("host config: no mac")
	case c.BootURL == "":
		return errors.New("host config: no boot_url")
	case c.Token == "":
		return errors.New("host config: no token")
	case (c.Role == rackcloud.RoleKVM || c.Role == rackcloud.RoleDocker) && (c.CA == "" || c.Cert == "" || c.Key == ""):
		return fmt.Errorf("host config: a %s host needs ca, cert and key", c.Role)
	}
	return nil
}

// Encode returns c's on-disk form.
func Encode(c Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	js, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if len(js)+len(Magic)+4+sha256.Size > MaxSize {
		return nil, fmt.Errorf("host config: %d bytes, more than %d", len(js), MaxSize)
	}
	var b bytes.Buffer
	b.WriteString(Magic)
	_ = binary.Write(&b, binary.BigEndian, uint32(len(js)))
	b.Write(js)
	sum := sha256.Sum256(js)
	b.Write(sum[:])
	return b.Bytes(), nil
}

// ErrNone says a device or partition holds no configuration.
var ErrNone = errors.New("host config: none found")

// Decode reads an encoded configuration from the start of r.
func Decode(r io.Reader) (Config, error) {
	var c Config
	head := make([]byte, len(Magic)+4)
	if _, err := io.ReadFull(r, head); err != nil {
		return c, fmt.Errorf("host config: %w", err)
	}
	if string(head[:len(Magic)]) != Magic {
		return c, ErrNone
	}
	n := binary.BigEndian.Uint32(head[len(Magic):])
	if int(n) > MaxSize {
		return c, fmt.Errorf("host config: length %d is too large", n)
	}
	body := make([]byte, int(n)+sha256.Size)
	if _, err := io.ReadFull(r, body); err != nil {
		return c, fmt.Errorf("host config: truncated: %w", err)
	}
	js, want := body[:n], body[n:]
	if got := sha256.Sum256(js); !bytes.Equal(got[:], want) {
		return c, errors.New("host config: checksum mismatch (the partition is damaged)")
	}
	if err := json.Unmarshal(js, &c); err != nil {
		return c, fmt.Errorf("host config: %w", err)
	}
	return c, c.Validate()
}

// Partition is a primary MBR partition, in bytes.
type Partition struct {
	Index  int // 1-4
	Type   byte
	Offset int64
	Size   int64
}

// Partitions parses the MBR at the start of a disk (512 bytes or more).
func Partitions(mbr []byte) ([]Partition, error) {
	if len(mbr) < 512 || mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, errors.New("no MBR partition table")
	}
	var ps []Partition
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i : 446+16*(i+1)]
		lba, n := binary.LittleEndian.Uint32(e[8:12]), binary.LittleEndian.Uint32(e[12:16])
		if e[4] == 0 || n == 0 {
			continue
		}
		ps = append(ps, Partition{Index: i + 1, Type: e[4], Offset: int64(lba) * 512, Size: int64(n) * 512})
	}
	return ps, nil
}

// Find returns the configuration partition of the disk image or device
// d (a file that reads like a whole disk).
func Find(d io.ReaderAt) (Partition, error) {
	mbr := make([]byte, 512)
	if _, err := d.ReadAt(mbr, 0); err != nil {
		return Partition{}, err
	}
	ps, err := Partitions(mbr)
	if err != nil {
		return Partition{}, err
	}
	for _, p := range ps {
		if p.Type == PartitionType {
			return p, nil
		}
	}
	return Partition{}, fmt.Errorf("%w: no partition of type %#x", ErrNone, PartitionType)
}

// Write writes c into the configuration partition of disk d, zeroing the
// rest of the first MaxSize bytes of it.
func Write(d io.WriterAt, r io.ReaderAt, c Config) error {
	p, err := Find(r)
	if err != nil {
		return err
	}
	enc, err := Encode(c)
	if err != nil {
		return err
	}
	if int64(len(enc)) > p.Size {
		return fmt.Errorf("host config: %d bytes do not fit the %d-byte partition", len(enc), p.Size)
	}
	buf := make([]byte, min(p.Size, MaxSize))
	copy(buf, enc)
	_, err = d.WriteAt(buf, p.Offset)
	return err
}

// Read reads the configuration from disk d.
func Read(d io.ReaderAt) (Config, error) {
	p, err := Find(d)
	if err != nil {
		return Config{}, err
	}
	return Decode(io.NewSectionReader(d, p.Offset, min(p.Size, MaxSize)))
}

// ReadDevices returns the configuration from the first of the whole-disk
// devices (e.g. /dev/vda, /dev/sda) that holds one.
func ReadDevices(devices []string) (Config, string, error) {
	var errs []error
	for _, dev := range devices {
		f, err := os.Open(dev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := Read(f)
		f.Close()
		if err == nil {
			return c, dev, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", dev, err))
	}
	return Config{}, "", errors.Join(append([]error{ErrNone}, errs...)...)
}

// Setup lays c out under root: the host config (without the key), the TLS
// files (the key 0600), libvirtd's copies on a kvm host, and the
// hostname.
func Setup(root string, c Config) error {
	pub := c
	pub.Key = ""
	js, err := json.MarshalIndent(pub, "", "  ")
	if err != nil {
		return err
	}
	type file struct {
		name, data string
		perm       os.FileMode
	}
	files := []file{{FileConfig, string(js) + "\n", 0o600}}
	if c.Hostname != "" {
		files = append(files, file{FileHostname, c.Hostname + "\n", 0o644})
	}
	if c.Cert != "" {
		files = append(files, file{FileCA, c.CA, 0o644}, file{FileCert, c.Cert, 0o644}, file{FileKey, c.Key, 0o600})
		if c.Role == rackcloud.RoleKVM {
			files = append(files, file{FileLibvirtCA, c.CA, 0o644}, file{FileLibvirtCert, c.Cert, 0o644},
				file{FileLibvirtKey, c.Key, 0o600})
		}
	}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(f.data), f.perm); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
	}
	return nil
}
