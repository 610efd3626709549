package order

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves goroutines behind: Run,
// the bus consumer, peer servers and client connections must all stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
