package client

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/seqknock/seqknock/internal/cliconv/clitest"
)

// TestManPageNamesEveryKey: seqknock(1)'s CONFIGURATION section names every
// key the client config accepts, in bold (.B or .BR).
func TestManPageNamesEveryKey(t *testing.T) {
	clitest.CheckConfigKeys(t, filepath.Join("..", "man", "seqknock.1"), "CONFIGURATION", reflect.TypeOf(rawClientConfig{}), 10)
}
