package productpricing

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
)

// BenchmarkSimulate10Lines prices a 10-line basket through a real gRPC
// connection, against a catalog of 200 products and 40 price lists. Compare
// it with BenchmarkEchoCeiling, the same connection answering a health
// check: the ratio is what matters, not the absolute time.
//
//	go test -run '^$' -bench 'Simulate10Lines|EchoCeiling' ./services/productpricing/
func BenchmarkSimulate10Lines(b *testing.B) {
	env := startServer(b, newDirectory(acmeEU, boltNA, plainEU))
	ctx := context.Background()
	const products = 200
	for i := range products {
		p := valve()
		p.Sku = fmt.Sprintf("SKU-%04d", i)
		if _, err := env.client.CreateProduct(ctx, &productpricingv1.CreateProductRequest{Product: p}); err != nil {
			b.Fatal(err)
		}
	}
	// Lists of every scope, each pricing every product, in three currencies.
	for i := range 40 {
		pl := list("", []string{"EUR", "USD", "CHF"}[i%3])
		pl.Name, pl.Priority = fmt.Sprintf("list %d", i), int32(i)
		switch i % 4 {
		case 1:
			pl.Region = "eu"
		case 2:
			pl.Region, pl.CustomerTier = "eu", "gold"
		case 3:
			pl.CustomerTier = "gold"
		}
		for j := range products {
			pl.Entries = append(pl.Entries, entry(fmt.Sprintf("SKU-%04d", j), "EA", "10.50", "12", "9.75", "120", "9.10"))
		}
		if _, err := env.client.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: pl}); err != nil {
			b.Fatal(err)
		}
	}
	req := &productpricingv1.SimulatePricesRequest{CustomerId: acmeEU.ID, CurrencyCode: "EUR"}
	for i := range 10 {
		req.Lines = append(req.Lines, line(fmt.Sprintf("SKU-%04d", i*17), fmt.Sprint(i+1), []string{"EA", "CASE"}[i%2]))
	}
	resp, err := env.client.SimulatePrices(ctx, req)
	if err != nil || resp.GetLines()[9].GetStatus() != productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED {
		b.Fatalf("warm-up: %v %v", resp, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := env.client.SimulatePrices(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEchoCeiling is the ceiling for BenchmarkSimulate10Lines: the same
// bufconn transport and interceptors answering the cheapest possible call.
func BenchmarkEchoCeiling(b *testing.B) {
	conn := dialBufconn(b, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, health.NewServer()) },
		grpc.ChainUnaryInterceptor(testPrincipal, testValidate))
	client := healthpb.NewHealthClient(conn)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSimulateHandler is the service's own share of a simulation: the
// handler called directly, without transport.
func BenchmarkSimulateHandler(b *testing.B) {
	db := openDB(b)
	srv := NewServer(db, Options{Now: clock, Customers: newDirectory(acmeEU)})
	ctx := context.Background()
	for i := range 200 {
		p := valve()
		p.Sku = fmt.Sprintf("SKU-%04d", i)
		if _, err := srv.CreateProduct(ctx, &productpricingv1.CreateProductRequest{Product: p}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 8 {
		pl := list("", "EUR")
		pl.Name, pl.Priority = fmt.Sprint(i), int32(i)
		for j := range 200 {
			pl.Entries = append(pl.Entries, entry(fmt.Sprintf("SKU-%04d", j), "EA", "10.50", "12", "9.75", "120", "9.10"))
		}
		if _, err := srv.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: pl}); err != nil {
			b.Fatal(err)
		}
	}
	req := &productpricingv1.SimulatePricesRequest{CustomerId: acmeEU.ID, CurrencyCode: "EUR"}
	for i := range 10 {
		req.Lines = append(req.Lines, line(fmt.Sprintf("SKU-%04d", i*17), fmt.Sprint(i+1), []string{"EA", "CASE"}[i%2]))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := srv.SimulatePrices(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
