package millrace

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/millrace/millrace/bench/ceilings"
	"github.com/millrace/millrace/bench/scenarios"
	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

// getCustomerAccounts is how many customers the GetCustomer scenarios load
// before reading random ones.
const getCustomerAccounts = 1000

// batchSize is the largest BatchUpsertCustomers request the contract allows.
const batchSize = 1000

// GetCustomer: the read every quote, order and CRM sync starts with. Its
// cost is the chain plus one bbolt read and the encoding of a ~260-byte
// customer, a little more payload than the ceiling's 100 bytes.
func init() {
	scenarios.Register(scenarios.Scenario{
		Name: "get-customer-grpc", Ceiling: ceilings.GRPCEchoName, TargetPct: 50,
		Setup: func(ctx context.Context) (func(context.Context, int) error, func(), error) {
			n, ids, err := startWithCustomers(ctx, getCustomerAccounts)
			if err != nil {
				return nil, nil, err
			}
			client := customerv1.NewCustomerServiceClient(n.conn)
			op := func(ctx context.Context, _ int) error {
				_, err := client.GetCustomer(authed(ctx), &customerv1.GetCustomerRequest{Id: ids[rand.IntN(len(ids))]})
				return err
			}
			return op, n.close, nil
		},
	})
	scenarios.Register(scenarios.Scenario{
		Name: "get-customer-rest", Ceiling: ceilings.HTTPJSONEchoName, TargetPct: 40,
		Setup: func(ctx context.Context) (func(context.Context, int) error, func(), error) {
			n, ids, err := startWithCustomers(ctx, getCustomerAccounts)
			if err != nil {
				return nil, nil, err
			}
			op := func(ctx context.Context, _ int) error {
				return n.get(ctx, "/v1/customers/"+ids[rand.IntN(len(ids))])
			}
			return op, n.close, nil
		},
	})
}

// startWithCustomers starts a node and loads count customers into it.
func startWithCustomers(ctx context.Context, count int) (*node, []string, error) {
	n, err := startNode(ctx, 64)
	if err != nil {
		return nil, nil, err
	}
	ids, err := loadCustomersGRPC(ctx, customerv1.NewCustomerServiceClient(n.conn), count)
	if err != nil {
		n.close()
		return nil, nil, err
	}
	return n, ids, nil
}

// loadCustomersGRPC upserts count sample customers in batches and returns
// their ids in load order.
func loadCustomersGRPC(ctx context.Context, client customerv1.CustomerServiceClient, count int) ([]string, error) {
	ids := make([]string, 0, count)
	for start := 0; start < count; start += batchSize {
		req := sampleBatch(start, min(batchSize, count-start))
		resp, err := client.BatchUpsertCustomers(authed(ctx), req)
		if err != nil {
			return nil, fmt.Errorf("load customers %d…: %w", start, err)
		}
		got, err := createdIDs(start, resp)
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// createdIDs checks that every item of a batch created an account and
// returns the ids.
func createdIDs(start int, resp *customerv1.BatchUpsertCustomersResponse) ([]string, error) {
	ids := make([]string, 0, len(resp.GetResults()))
	for _, r := range resp.GetResults() {
		if r.GetError() != nil || r.GetResult() != customerv1.UpsertResult_UPSERT_RESULT_CREATED {
			return nil, fmt.Errorf("load customer %d: %v %v", start+int(r.GetIndex()), r.GetResult(), r.GetError())
		}
		ids = append(ids, r.GetCustomerId())
	}
	return ids, nil
}

// sampleBatch is a batch upsert of the sample customers start to
// start+count-1.
func sampleBatch(start, count int) *customerv1.BatchUpsertCustomersRequest {
	req := &customerv1.BatchUpsertCustomersRequest{Items: make([]*customerv1.UpsertCustomerByExternalRefRequest, count)}
	for i := range count {
		req.Items[i] = sampleCustomer(start + i)
	}
	return req
}

var sampleRegions = []struct{ region, currency, country, city string }{
	{"eu", "EUR", "DE", "Stuttgart"},
	{"na", "USD", "US", "Cleveland"},
	{"apac", "JPY", "JP", "Nagoya"},
}

// sampleCustomer is the i-th of a deterministic set of customers shaped like
// a CRM's accounts: names, an address, contact details and the CRM's id,
// about 260 bytes in protobuf.
func sampleCustomer(i int) *customerv1.UpsertCustomerByExternalRefRequest {
	r := sampleRegions[i%len(sampleRegions)]
	ref := &typev1.ExternalRef{System: "salesforce", Id: fmt.Sprintf("001B%011d", i)}
	return &customerv1.UpsertCustomerByExternalRefRequest{
		ExternalRef: ref,
		Customer: &customerv1.Customer{
			DisplayName:  fmt.Sprintf("Customer %07d", i),
			LegalName:    fmt.Sprintf("Customer %07d Manufacturing Ltd", i),
			Region:       r.region,
			Tier:         []string{"", "silver", "gold"}[i%3],
			Email:        fmt.Sprintf("purchasing@customer%07d.example", i),
			Phone:        "+1 216 555 0100",
			CurrencyCode: r.currency,
			BillingAddress: &typev1.Address{
				Lines:       []string{fmt.Sprintf("%d Industrial Parkway", 100+i%900)},
				City:        r.city,
				PostalCode:  fmt.Sprintf("%05d", i%100000),
				CountryCode: r.country,
			},
		},
	}
}
