package hostconfig_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostconfig"
)

// disk builds a 4 MiB disk image with a FAT-typed p1 and a config p2 of
// 1 MiB at 2 MiB.
func disk(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(4 << 20); err != nil {
		t.Fatal(err)
	}
	mbr := make([]byte, 512)
	entry := func(i int, typ byte, lba, n uint32) {
		e := mbr[446+16*i:]
		e[4] = typ
		binary.LittleEndian.PutUint32(e[8:], lba)
		binary.LittleEndian.PutUint32(e[12:], n)
	}
	entry(0, 0x0c, 2048, 2048)
	entry(1, hostconfig.PartitionType, 4096, 2048)
	mbr[510], mbr[511] = 0x55, 0xaa
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

func config() hostconfig.Config {
	return hostconfig.Config{Version: 1, HostID: "0b7e8a52-1b43-4c1e-9a53-9a1b7d8f3c21", Hostname: "node1",
		Role: rackcloud.RoleDocker, MAC: "52:54:00:aa:01:01", BootURL: "http://10.88.0.1:8080", Token: "tok",
		CA: "CA PEM", Cert: "CERT PEM", Key: "KEY PEM", HeartbeatSeconds: 10}
}

func TestWriteReadSetup(t *testing.T) {
	f := disk(t)
	if _, err := hostconfig.Read(f); !errors.Is(err, hostconfig.ErrNone) {
		t.Fatalf("blank partition: %v, want ErrNone", err)
	}
	c := config()
	if err := hostconfig.Write(f, f, c); err != nil {
		t.Fatal(err)
	}
	got, dev, err := hostconfig.ReadDevices([]string{filepath.Join(t.TempDir(), "missing"), f.Name()})
	if err != nil || dev != f.Name() || got != c {
		t.Fatalf("ReadDevices = %+v, %s, %v", got, dev, err)
	}
	root := t.TempDir()
	if err := hostconfig.Setup(root, got); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(root, hostconfig.FileConfig))
	if strings.Contains(string(js), "KEY PEM") || !strings.Contains(string(js), `"host_id"`) {
		t.Fatalf("host.json = %s", js)
	}
	st, err := os.Stat(filepath.Join(root, hostconfig.FileKey))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(root, hostconfig.FileLibvirtKey)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a docker host got libvirt files: %v", err)
	}
}

func TestDamagedAndInvalid(t *testing.T) {
	f := disk(t)
	if err := hostconfig.Write(f, f, config()); err != nil {
		t.Fatal(err)
	}
	// Flip a byte of the JSON.
	if _, err := f.WriteAt([]byte{'X'}, 4096*512+20); err != nil {
		t.Fatal(err)
	}
	if _, err := hostconfig.Read(f); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("damaged: %v", err)
	}
	c := config()
	c.Cert = ""
	if err := hostconfig.Write(f, f, c); err == nil || !strings.Contains(err.Error(), "needs ca, cert and key") {
		t.Fatalf("docker without cert: %v", err)
	}
	if _, err := hostconfig.Partitions(make([]byte, 512)); err == nil {
		t.Fatal("no MBR read as one")
	}
}
