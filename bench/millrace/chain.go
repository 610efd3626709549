package millrace

import (
	"context"

	"github.com/millrace/millrace/bench/ceilings"
	"github.com/millrace/millrace/bench/scenarios"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
)

// The authenticated no-op: GetCallerIdentity does nothing but answer who
// called, so its cost is the interceptor chain (correlation id, auth,
// rate limiter, validation, idempotency check, metrics, logging) and the
// transport.
func init() {
	scenarios.Register(scenarios.Scenario{
		Name: "chain-noop-grpc", Ceiling: ceilings.GRPCEchoName, TargetPct: 70,
		Setup: func(ctx context.Context) (func(context.Context, int) error, func(), error) {
			n, err := startNode(ctx, 64)
			if err != nil {
				return nil, nil, err
			}
			client := integrationv1.NewApiKeyServiceClient(n.conn)
			op := func(ctx context.Context, _ int) error {
				_, err := client.GetCallerIdentity(authed(ctx), &integrationv1.GetCallerIdentityRequest{})
				return err
			}
			return op, n.close, nil
		},
	})
	scenarios.Register(scenarios.Scenario{
		Name: "chain-noop-rest", Ceiling: ceilings.HTTPJSONEchoName, TargetPct: 50,
		Setup: func(ctx context.Context) (func(context.Context, int) error, func(), error) {
			n, err := startNode(ctx, 64)
			if err != nil {
				return nil, nil, err
			}
			op := func(ctx context.Context, _ int) error { return n.get(ctx, "/v1/callerIdentity") }
			return op, n.close, nil
		},
	})
}
