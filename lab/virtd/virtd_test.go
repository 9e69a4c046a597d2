package virtd_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/virtd"
)

func connect(t *testing.T, d *virtd.Daemon) *libvirt.Libvirt {
	t.Helper()
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(d.Socket)))
	require.NoError(t, l.ConnectToURI(libvirt.QEMUSystem))
	t.Cleanup(func() { _ = l.Disconnect() })
	return l
}

// Two daemons run at once, each with its own state: a pool defined on one
// is not on the other.
func TestTwoDaemonsDoNotShareState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ds []*virtd.Daemon
	for i, gw := range []string{"10.91.1.1/24", "10.91.2.1/24"} {
		n, err := netns.New(ctx, "rc-virtd-test-"+string(rune('a'+i)), netip.MustParsePrefix(gw))
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.Close() })
		start := time.Now()
		d, err := virtd.Start(ctx, virtd.Config{Dir: filepath.Join(t.TempDir(), "virtd"), Netns: n})
		require.NoError(t, err)
		t.Logf("libvirtd %d answered after %s", i, time.Since(start).Round(time.Millisecond))
		t.Cleanup(d.Stop)
		ds = append(ds, d)
	}
	a, b := connect(t, ds[0]), connect(t, ds[1])
	_, err := a.StoragePoolCreateXML("<pool type='dir'><name>only-a</name><target><path>"+virtd.DefaultPoolDir+"</path></target></pool>", 0)
	require.NoError(t, err)
	_, err = a.StoragePoolLookupByName("only-a")
	require.NoError(t, err)
	_, err = b.StoragePoolLookupByName("only-a")
	require.Error(t, err, "the second daemon does not see the first's pool")
	_, err = os.Stat(filepath.Join(ds[0].Config.Dir, "run", "storage", "only-a.xml"))
	require.NoError(t, err, "the daemon's state is under its Dir")

	ds[0].Stop()
	ds[0].Stop()
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(ds[0].Socket), dialers.WithLocalTimeout(time.Second)))
	require.Error(t, l.ConnectToURI(libvirt.QEMUSystem), "stopped")
}
