// Package edge holds the integration side of Millrace that is not a
// domain: API keys, operations such as backups, and (as they arrive)
// webhook subscriptions and the event feed. Its state lives in the
// integration store.
package edge

import (
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/feed"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/internal/webhooks"
)

// Schema is the layout of the integration store.
var Schema = storage.Schema{
	Name:    "integration",
	Version: 1,
	Buckets: concat(
		[][]byte{auth.BucketAPIKeys},
		webhooks.Buckets,
		feed.Buckets,
	),
	Appended: feed.Appended,
}

func concat(lists ...[][]byte) [][]byte {
	var out [][]byte
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
