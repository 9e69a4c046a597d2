package alerts_test

import (
	"testing"

	"github.com/rackcloud/rackcloud/lab/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
