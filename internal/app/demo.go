package app

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/millrace/millrace/internal/demo"
)

// loadDemo loads the demo data through the public API and prints how to
// call the running server.
func (n *node) loadDemo(ctx context.Context, adminKey, httpAddr, grpcAddr string) error {
	if adminKey == "" {
		return fmt.Errorf("no admin key is available to load the demo data; set MILLRACE_ADMIN_KEY")
	}
	conn, err := n.dialInProcess(false)
	if err != nil {
		return err
	}
	n.log.Info("loading demo data")
	sum, err := demo.Load(ctx, conn, adminKey)
	if err != nil {
		return err
	}
	base := "http://" + localAddr(httpAddr)
	example := ""
	if len(sum.Customers) > 0 {
		example = sum.Customers[0].GetId()
	}
	fmt.Fprintf(n.stdout, `
Millrace is running with demo data: %d customers in two regions with a credit group,
%d products with price lists, stock at three sites, quotes, and orders (one held for credit).

  REST      %s/v1/...        OpenAPI: %s/openapi.json
  gRPC      %s               (grpcurl -plaintext %s list)
  admin key %s

Try:
  curl -s -H "Authorization: Bearer %s" "%s/v1/customers?pageSize=5"
  curl -s -H "Authorization: Bearer %s" "%s/v1/orders?status=ORDER_STATUS_ON_HOLD"
  curl -s -H "Authorization: Bearer %s" "%s/v1/customers/%s/hierarchy"
  curl -s -X POST -H "Authorization: Bearer %s" -H "Content-Type: application/json" \
       -d '{"customerId":"%s","currencyCode":"EUR","lines":[{"sku":"VALVE-BV25","quantity":{"value":"2","unit":"CASE"}}]}' \
       %s/v1/prices:simulate

Stop with Ctrl-C.
`, len(sum.Customers), len(sum.SKUs), base, base, localAddr(grpcAddr), localAddr(grpcAddr), adminKey, adminKey, base, adminKey, base, adminKey, base, example, adminKey, example, base)
	return nil
}

// localAddr turns a listen address like "[::]:8080" into one a user can
// call: "localhost:8080".
func localAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" || strings.HasPrefix(host, "[") {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
