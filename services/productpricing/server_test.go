package productpricing

import (
	"context"
	"errors"
	"sort"
	"sync/atomic"
	"testing"

	"buf.build/go/protovalidate"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testPrincipal is a tiny stand-in for the platform's auth interceptor: the
// caller's role and region scope come from metadata, admin by default.
func testPrincipal(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	p := auth.Principal{KeyID: "key_test", Name: "test", Role: auth.RoleAdmin}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if r := md.Get("x-test-region"); len(r) > 0 {
			p.Region = r[0]
		}
		if r := md.Get("x-test-role"); len(r) > 0 {
			if role, ok := auth.ParseRole(r[0]); ok {
				p.Role = role
			}
		}
	}
	return handler(auth.WithPrincipal(ctx, p), req)
}

// testValidate checks the contract's protovalidate rules as the platform
// does before a handler runs, so the tests see what a real caller sees.
func testValidate(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if msg, ok := req.(proto.Message); ok {
		if err := protovalidate.Validate(msg); err != nil {
			var ve *protovalidate.ValidationError
			if !errors.As(err, &ve) {
				return nil, apierr.Internal()
			}
			var fvs []apierr.FieldViolation
			for _, v := range ve.Violations {
				fvs = append(fvs, apierr.FieldViolation{Field: protovalidate.FieldPathString(v.Proto.GetField()), Description: v.Proto.GetMessage()})
			}
			return nil, apierr.InvalidFields(fvs...)
		}
	}
	return handler(ctx, req)
}

type testEnv struct {
	client   productpricingv1.ProductPricingServiceClient
	db       *storage.DB
	dir      *fakeDirectory
	notified *atomic.Int64
}

// startServer runs the service on a real gRPC server over bufconn.
func startServer(t testing.TB, dir CustomerDirectory) *testEnv {
	t.Helper()
	db := openDB(t)
	var notified atomic.Int64
	srv := NewServer(db, Options{Notify: func() { notified.Add(1) }, Now: clock, Customers: dir})
	conn := dialBufconn(t, func(s *grpc.Server) { productpricingv1.RegisterProductPricingServiceServer(s, srv) },
		grpc.ChainUnaryInterceptor(testPrincipal, testValidate))
	env := &testEnv{client: productpricingv1.NewProductPricingServiceClient(conn), db: db, notified: &notified}
	env.dir, _ = dir.(*fakeDirectory)
	return env
}

func asKey(region, role string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-test-region", region, "x-test-role", role)
}

// apiError is what a caller can read from a status.
type apiError struct {
	code   codes.Code
	reason string
	meta   map[string]string
	fields []string
	msg    string
}

func readStatus(t *testing.T, err error) apiError {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("error %v is not a status", err)
	}
	out := apiError{code: st.Code(), msg: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			out.reason, out.meta = d.GetReason(), d.GetMetadata()
			if d.GetDomain() != apierr.Domain {
				t.Errorf("domain %q", d.GetDomain())
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				out.fields = append(out.fields, v.GetField())
			}
		}
	}
	return out
}

func wantStatus(t *testing.T, err error, code codes.Code, reason, field string) apiError {
	t.Helper()
	got := readStatus(t, err)
	if got.code != code || got.reason != reason {
		t.Errorf("status %s %s (%q), want %s %s", got.code, got.reason, got.msg, code, reason)
	}
	if field != "" {
		found := false
		for _, f := range got.fields {
			found = found || f == field
		}
		if !found {
			t.Errorf("field violations %v do not name %s (%q)", got.fields, field, got.msg)
		}
	}
	return got
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

func TestServerProducts(t *testing.T) {
	env := startServer(t, newDirectory())
	ctx := context.Background()
	c := env.client
	sap := &typev1.ExternalRef{System: "sap", Id: "M-100"}

	created, err := c.CreateProduct(ctx, &productpricingv1.CreateProductRequest{Product: with(valve(), func(p *productpricingv1.Product) {
		p.ExternalRefs = []*typev1.ExternalRef{sap}
	})})
	if err != nil {
		t.Fatal(err)
	}
	p := created.GetProduct()

	t.Run("get", func(t *testing.T) {
		got, err := c.GetProduct(ctx, &productpricingv1.GetProductRequest{Sku: "VALVE-100"})
		if err != nil || !proto.Equal(got.GetProduct(), p) {
			t.Fatalf("get = %v, %v", got, err)
		}
		_, err = c.GetProduct(ctx, &productpricingv1.GetProductRequest{Sku: "NOPE"})
		wantStatus(t, err, codes.NotFound, apierr.ReasonNotFound, "")
	})

	t.Run("update with a field mask and the etag", func(t *testing.T) {
		// The contract validates the whole product, masked or not, so a
		// caller sends the record it read with its changes.
		resp, err := c.UpdateProduct(ctx, &productpricingv1.UpdateProductRequest{
			Product: with(p, func(p *productpricingv1.Product) {
				p.Name, p.LeadTimeDays, p.Conversions = "Ball valve DN25 PN40", 99, nil
			}),
			UpdateMask: mask("name"),
		})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetProduct()
		if got.GetName() != "Ball valve DN25 PN40" || got.GetLeadTimeDays() != 0 || len(got.GetConversions()) != 2 || got.GetEtag() == p.GetEtag() {
			t.Errorf("updated %v", got)
		}
		_, err = c.UpdateProduct(ctx, &productpricingv1.UpdateProductRequest{
			Product:    with(p, func(p *productpricingv1.Product) { p.Name = "again" }),
			UpdateMask: mask("name"),
		})
		wantStatus(t, err, codes.Aborted, apierr.ReasonStaleEtag, "")
		p = got
	})

	t.Run("upsert by external reference", func(t *testing.T) {
		crm := &typev1.ExternalRef{System: "salesforce", Id: "01t000000000001"}
		in := with(valve(), func(p *productpricingv1.Product) { p.Sku = "PUMP-200"; p.Name = "Pump" })
		first, err := c.UpsertProductByExternalRef(ctx, &productpricingv1.UpsertProductByExternalRefRequest{ExternalRef: crm, Product: in})
		if err != nil || !first.GetCreated() {
			t.Fatalf("first upsert: %v, %v", first, err)
		}
		second, err := c.UpsertProductByExternalRef(ctx, &productpricingv1.UpsertProductByExternalRefRequest{
			ExternalRef: crm, Product: with(in, func(p *productpricingv1.Product) { p.LeadTimeDays = 14 }),
		})
		if err != nil || second.GetCreated() || second.GetProduct().GetLeadTimeDays() != 14 {
			t.Fatalf("second upsert: %v, %v", second, err)
		}
		listed, err := c.ListProducts(ctx, &productpricingv1.ListProductsRequest{ExternalRefSystem: "salesforce", ExternalRefId: crm.GetId()})
		if err != nil || len(listed.GetProducts()) != 1 || listed.GetProducts()[0].GetSku() != "PUMP-200" {
			t.Fatalf("list by ref: %v, %v", listed, err)
		}
	})

	t.Run("conflicts", func(t *testing.T) {
		_, err := c.CreateProduct(ctx, &productpricingv1.CreateProductRequest{Product: valve()})
		wantStatus(t, err, codes.AlreadyExists, apierr.ReasonAlreadyExists, "")
		_, err = c.UpsertProductByExternalRef(ctx, &productpricingv1.UpsertProductByExternalRefRequest{
			ExternalRef: &typev1.ExternalRef{System: "plm", Id: "x"},
			Product: with(valve(), func(p *productpricingv1.Product) {
				p.Sku = "FIT-300"
				p.ExternalRefs = []*typev1.ExternalRef{sap}
			}),
		})
		got := wantStatus(t, err, codes.AlreadyExists, ReasonExternalRefTaken, "")
		if got.meta["holder"] != "VALVE-100" {
			t.Errorf("metadata %v should name the holder", got.meta)
		}
	})

	t.Run("list pages in SKU order", func(t *testing.T) {
		var skus []string
		token := ""
		for {
			resp, err := c.ListProducts(ctx, &productpricingv1.ListProductsRequest{PageSize: 1, PageToken: token, Status: productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range resp.GetProducts() {
				skus = append(skus, p.GetSku())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if !sort.StringsAreSorted(skus) || len(skus) != 2 {
			t.Errorf("skus %v", skus)
		}
	})

	t.Run("events and notifications", func(t *testing.T) {
		evs := outbox(t, env.db)
		// create, update, upsert create, upsert update
		if len(evs) != 4 || env.notified.Load() != 4 {
			t.Errorf("%d events, %d notifications; want 4 each", len(evs), env.notified.Load())
		}
		for _, e := range evs {
			if e.GetType() != "millrace.events.v1.ProductChanged" {
				t.Errorf("event type %s", e.GetType())
			}
		}
	})
}

func TestServerConvertQuantity(t *testing.T) {
	env := startServer(t, newDirectory())
	ctx := context.Background()
	for _, p := range []*productpricingv1.Product{valve(), resin()} {
		if _, err := env.client.CreateProduct(ctx, &productpricingv1.CreateProductRequest{Product: p}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		req    *productpricingv1.ConvertQuantityRequest
		want   string
		code   codes.Code
		reason string
		field  string
	}{
		{"pallets to eaches", &productpricingv1.ConvertQuantityRequest{Sku: "VALVE-100", Quantity: qty("2", "PALLET"), ToUnit: "EA"}, "960 EA / 960 EA", 0, "", ""},
		{"pounds to kilograms", &productpricingv1.ConvertQuantityRequest{Sku: "RESIN-PP", Quantity: qty("200", "LB"), ToUnit: "KG"}, "90.718474 KG / 90.718474 KG", 0, "", ""},
		{"not whole cases", &productpricingv1.ConvertQuantityRequest{Sku: "VALVE-100", Quantity: qty("13", "EA"), ToUnit: "CASE"}, "", codes.InvalidArgument, ReasonNotWholeUnits, "to_unit"},
		{"kilograms to pounds does not terminate", &productpricingv1.ConvertQuantityRequest{Sku: "RESIN-PP", Quantity: qty("1", "KG"), ToUnit: "LB"}, "", codes.InvalidArgument, ReasonNotExact, "to_unit"},
		{"unit the product lacks", &productpricingv1.ConvertQuantityRequest{Sku: "VALVE-100", Quantity: qty("1", "KG"), ToUnit: "EA"}, "", codes.InvalidArgument, apierr.ReasonInvalidArgument, "quantity.unit"},
		{"unknown product", &productpricingv1.ConvertQuantityRequest{Sku: "NOPE", Quantity: qty("1", "EA"), ToUnit: "EA"}, "", codes.NotFound, apierr.ReasonNotFound, ""},
		{"malformed quantity stopped by the contract", &productpricingv1.ConvertQuantityRequest{Sku: "VALVE-100", Quantity: qty("1.1234567", "EA"), ToUnit: "EA"}, "", codes.InvalidArgument, apierr.ReasonInvalidArgument, "quantity.value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := env.client.ConvertQuantity(ctx, tt.req)
			if tt.code != codes.OK {
				wantStatus(t, err, tt.code, tt.reason, tt.field)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := resp.GetQuantity().GetValue() + " " + resp.GetQuantity().GetUnit() + " / " + resp.GetBaseQuantity().GetValue() + " " + resp.GetBaseQuantity().GetUnit()
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// seedPricing creates the products and lists the pricing tests share.
func seedPricing(t *testing.T, env *testEnv) map[string]*productpricingv1.PriceList {
	t.Helper()
	ctx := context.Background()
	for _, p := range []*productpricingv1.Product{valve(), resin()} {
		if _, err := env.client.CreateProduct(ctx, &productpricingv1.CreateProductRequest{Product: p}); err != nil {
			t.Fatal(err)
		}
	}
	specs := map[string]*productpricingv1.PriceList{
		"global": list("", "EUR", entry("VALVE-100", "EA", "10"), entry("RESIN-PP", "KG", "3")),
		"eu": with(list("", "EUR", entry("VALVE-100", "CASE", "110", "10", "100")), func(p *productpricingv1.PriceList) {
			p.Region = "eu"
		}),
		"gold": with(list("", "EUR", entry("VALVE-100", "EA", "8.5")), func(p *productpricingv1.PriceList) {
			p.CustomerTier = "gold"
		}),
		"acme": with(list("", "EUR", entry("RESIN-PP", "KG", "2.40")), func(p *productpricingv1.PriceList) {
			p.CustomerId = acmeEU.ID
		}),
		"na": with(list("", "USD", entry("VALVE-100", "EA", "11")), func(p *productpricingv1.PriceList) {
			p.Region = "na"
		}),
	}
	out := map[string]*productpricingv1.PriceList{}
	for _, name := range []string{"global", "eu", "gold", "acme", "na"} {
		pl := specs[name]
		pl.Name = name
		resp, err := env.client.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: pl})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		out[name] = resp.GetPriceList()
	}
	return out
}

func TestServerPricing(t *testing.T) {
	env := startServer(t, newDirectory(acmeEU, boltNA, plainEU))
	ctx := context.Background()
	lists := seedPricing(t, env)

	t.Run("simulate explains every line", func(t *testing.T) {
		resp, err := env.client.SimulatePrices(ctx, &productpricingv1.SimulatePricesRequest{
			CustomerId:   acmeEU.ID,
			CurrencyCode: "EUR",
			Lines: []*productpricingv1.SimulationLine{
				line("VALVE-100", "3", "CASE"), // eu region list beats gold tier-only list: 3 CASE < 10
				line("RESIN-PP", "110", "LB"),  // acme's own list, per KG
				line("GHOST", "1", "EA"),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		l0, l1, l2 := resp.GetLines()[0], resp.GetLines()[1], resp.GetLines()[2]
		if l0.GetPriceListId() != lists["eu"].GetId() || l0.GetPriceListScope() != ScopeRegion || l0.GetLineTotal().GetAmount() != "330.00" ||
			l0.GetUnitPrice().GetAmount() != "110.00" || l0.GetPricedQuantity().GetValue() != "3" || l0.GetAppliedBreakMinQuantity() != "" {
			t.Errorf("line 0: %v", l0)
		}
		// 110 LB = 49.8951607 KG × 2.40 = 119.74838568 → 119.75
		if l1.GetPriceListId() != lists["acme"].GetId() || l1.GetPriceListScope() != ScopeCustomer ||
			l1.GetPricedQuantity().GetValue() != "49.8951607" || l1.GetLineTotal().GetAmount() != "119.75" {
			t.Errorf("line 1: %v", l1)
		}
		if l2.GetStatus() != productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_INVALID || l2.GetReason() != ReasonUnknownProduct {
			t.Errorf("line 2: %v", l2)
		}
		if resp.GetTotal().GetAmount() != "449.75" || resp.GetTotal().GetCurrencyCode() != "EUR" || !resp.GetPriceTime().AsTime().Equal(now) {
			t.Errorf("total %v at %v", resp.GetTotal(), resp.GetPriceTime().AsTime())
		}
	})

	t.Run("overlap is a conflict naming the other list", func(t *testing.T) {
		_, err := env.client.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: with(lists["eu"], func(p *productpricingv1.PriceList) {
			p.Id, p.Etag, p.ValidFrom = "", "", ts(feb1)
		})})
		got := wantStatus(t, err, codes.AlreadyExists, ReasonPriceListOverlap, "")
		if got.meta["price_list_id"] != lists["eu"].GetId() {
			t.Errorf("metadata %v", got.meta)
		}
	})

	t.Run("a refused list stores nothing", func(t *testing.T) {
		before := len(outbox(t, env.db))
		_, err := env.client.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: with(list("", "EUR",
			entry("VALVE-100", "EA", "1"), entry("RESIN-PP", "EA", "1")), func(p *productpricingv1.PriceList) {
			p.Name, p.Priority = "bad", 7
		})})
		wantStatus(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument, "price_list.entries[1].unit")
		all, err := env.client.ListPriceLists(ctx, &productpricingv1.ListPriceListsRequest{})
		if err != nil || len(all.GetPriceLists()) != len(lists) {
			t.Errorf("%d lists after a refused create, want %d (%v)", len(all.GetPriceLists()), len(lists), err)
		}
		if len(outbox(t, env.db)) != before {
			t.Error("a refused create emitted an event")
		}
	})

	t.Run("update and delete with etags", func(t *testing.T) {
		gold := lists["gold"]
		resp, err := env.client.UpdatePriceList(ctx, &productpricingv1.UpdatePriceListRequest{
			PriceList:  with(gold, func(p *productpricingv1.PriceList) { p.Region = "eu" }),
			UpdateMask: mask("region"),
		})
		if err != nil {
			t.Fatal(err)
		}
		updated := resp.GetPriceList()
		if updated.GetRegion() != "eu" || len(updated.GetEntries()) != 1 {
			t.Errorf("updated %v", updated)
		}
		// Now tier+region: it beats the region list for gold customers.
		sim, err := env.client.SimulatePrices(ctx, &productpricingv1.SimulatePricesRequest{CustomerId: acmeEU.ID, CurrencyCode: "EUR", Lines: []*productpricingv1.SimulationLine{line("VALVE-100", "2", "EA")}})
		if err != nil || sim.GetLines()[0].GetPriceListScope() != ScopeTierRegion || sim.GetTotal().GetAmount() != "17.00" {
			t.Errorf("after update: %v, %v", sim, err)
		}

		_, err = env.client.DeletePriceList(ctx, &productpricingv1.DeletePriceListRequest{Id: gold.GetId(), Etag: gold.GetEtag()})
		wantStatus(t, err, codes.Aborted, apierr.ReasonStaleEtag, "")
		if _, err := env.client.DeletePriceList(ctx, &productpricingv1.DeletePriceListRequest{Id: gold.GetId(), Etag: updated.GetEtag()}); err != nil {
			t.Fatal(err)
		}
		_, err = env.client.GetPriceList(ctx, &productpricingv1.GetPriceListRequest{Id: gold.GetId()})
		wantStatus(t, err, codes.NotFound, apierr.ReasonNotFound, "")
		ev := &eventsv1.PriceListChanged{}
		lastEvent(t, env.db, ev)
		if !ev.GetDeleted() || ev.GetPriceList().GetId() != gold.GetId() {
			t.Errorf("event %v", ev)
		}
	})
}

func TestServerRefusals(t *testing.T) {
	dir := newDirectory(acmeEU, boltNA, plainEU)
	env := startServer(t, dir)
	lists := seedPricing(t, env)
	c := env.client
	bg := context.Background()
	eu := asKey("eu", "erp")

	tests := []struct {
		name   string
		call   func(ctx context.Context) error
		ctx    context.Context
		code   codes.Code
		reason string
		field  string
	}{
		{"conversion cycle", func(ctx context.Context) error {
			_, err := c.CreateProduct(ctx, &productpricingv1.CreateProductRequest{Product: with(valve(), func(p *productpricingv1.Product) {
				p.Sku = "LOOP-1"
				p.Conversions[0].PerUnit = "PALLET"
			})})
			return err
		}, bg, codes.InvalidArgument, apierr.ReasonInvalidArgument, "product.conversions[0].per_unit"},
		{"mask names the key", func(ctx context.Context) error {
			_, err := c.UpdateProduct(ctx, &productpricingv1.UpdateProductRequest{Product: valve(), UpdateMask: mask("name", "sku")})
			return err
		}, bg, codes.InvalidArgument, apierr.ReasonInvalidArgument, "update_mask.paths[1]"},
		{"dropping a unit a list prices in", func(ctx context.Context) error {
			_, err := c.UpdateProduct(ctx, &productpricingv1.UpdateProductRequest{
				Product: with(valve(), func(p *productpricingv1.Product) { p.Conversions = nil }), UpdateMask: mask("conversions"),
			})
			return err
		}, bg, codes.FailedPrecondition, ReasonUnitInUse, ""},
		{"half an external reference filter", func(ctx context.Context) error {
			_, err := c.ListProducts(ctx, &productpricingv1.ListProductsRequest{ExternalRefSystem: "sap"})
			return err
		}, bg, codes.InvalidArgument, apierr.ReasonInvalidArgument, "external_ref_id"},
		{"foreign page token", func(ctx context.Context) error {
			_, err := c.ListPriceLists(ctx, &productpricingv1.ListPriceListsRequest{PageToken: "AQID"})
			return err
		}, bg, codes.InvalidArgument, apierr.ReasonInvalidArgument, "page_token"},
		{"unknown customer", func(ctx context.Context) error {
			_, err := c.SimulatePrices(ctx, &productpricingv1.SimulatePricesRequest{CustomerId: "cus_NOPE", CurrencyCode: "EUR", Lines: []*productpricingv1.SimulationLine{line("VALVE-100", "1", "EA")}})
			return err
		}, bg, codes.InvalidArgument, ReasonUnknownCustomer, "customer_id"},
		{"currency not in ISO 4217", func(ctx context.Context) error {
			_, err := c.SimulatePrices(ctx, &productpricingv1.SimulatePricesRequest{CustomerId: acmeEU.ID, CurrencyCode: "XYZ", Lines: []*productpricingv1.SimulationLine{line("VALVE-100", "1", "EA")}})
			return err
		}, bg, codes.InvalidArgument, apierr.ReasonInvalidArgument, "currency_code"},
		{"customer-specific list for an unknown customer", func(ctx context.Context) error {
			_, err := c.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: with(list("", "EUR", entry("VALVE-100", "EA", "1")), func(p *productpricingv1.PriceList) {
				p.CustomerId = "cus_NOPE"
			})})
			return err
		}, bg, codes.InvalidArgument, ReasonUnknownCustomer, "price_list.customer_id"},
		{"customer-specific list in another region than the customer's", func(ctx context.Context) error {
			_, err := c.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: with(list("", "EUR", entry("VALVE-100", "EA", "1")), func(p *productpricingv1.PriceList) {
				p.CustomerId, p.Region = acmeEU.ID, "na"
			})})
			return err
		}, bg, codes.InvalidArgument, apierr.ReasonInvalidArgument, "price_list.region"},
		{"customer and tier together", func(ctx context.Context) error {
			_, err := c.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: with(list("", "EUR", entry("VALVE-100", "EA", "1")), func(p *productpricingv1.PriceList) {
				p.CustomerId, p.CustomerTier, p.Priority = acmeEU.ID, "gold", 9
			})})
			return err
		}, bg, codes.InvalidArgument, apierr.ReasonInvalidArgument, "price_list.customer_tier"},
		{"EU key reading an NA list", func(ctx context.Context) error {
			_, err := c.GetPriceList(ctx, &productpricingv1.GetPriceListRequest{Id: lists["na"].GetId()})
			return err
		}, eu, codes.NotFound, apierr.ReasonNotFound, ""},
		{"EU key deleting an NA list", func(ctx context.Context) error {
			_, err := c.DeletePriceList(ctx, &productpricingv1.DeletePriceListRequest{Id: lists["na"].GetId()})
			return err
		}, eu, codes.NotFound, apierr.ReasonNotFound, ""},
		{"EU key writing a list for every region", func(ctx context.Context) error {
			_, err := c.UpdatePriceList(ctx, &productpricingv1.UpdatePriceListRequest{
				PriceList: with(lists["global"], func(p *productpricingv1.PriceList) { p.Name = "mine" }), UpdateMask: mask("name"),
			})
			return err
		}, eu, codes.PermissionDenied, ReasonRegionOutOfScope, ""},
		{"EU key moving its list to NA", func(ctx context.Context) error {
			_, err := c.UpdatePriceList(ctx, &productpricingv1.UpdatePriceListRequest{
				PriceList: with(lists["eu"], func(p *productpricingv1.PriceList) { p.Region = "na" }), UpdateMask: mask("region"),
			})
			return err
		}, eu, codes.PermissionDenied, ReasonRegionOutOfScope, ""},
		{"EU key creating an NA list", func(ctx context.Context) error {
			_, err := c.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: with(list("", "USD", entry("VALVE-100", "EA", "1")), func(p *productpricingv1.PriceList) {
				p.Region, p.Priority = "na", 3
			})})
			return err
		}, eu, codes.PermissionDenied, ReasonRegionOutOfScope, ""},
		{"EU key pricing for an NA customer", func(ctx context.Context) error {
			_, err := c.SimulatePrices(ctx, &productpricingv1.SimulatePricesRequest{CustomerId: boltNA.ID, CurrencyCode: "USD", Lines: []*productpricingv1.SimulationLine{line("VALVE-100", "1", "EA")}})
			return err
		}, eu, codes.InvalidArgument, ReasonUnknownCustomer, "customer_id"},
		{"too many lines stopped by the contract", func(ctx context.Context) error {
			var lines []*productpricingv1.SimulationLine
			for range 201 {
				lines = append(lines, line("VALVE-100", "1", "EA"))
			}
			_, err := c.SimulatePrices(ctx, &productpricingv1.SimulatePricesRequest{CustomerId: acmeEU.ID, CurrencyCode: "EUR", Lines: lines})
			return err
		}, bg, codes.InvalidArgument, apierr.ReasonInvalidArgument, "lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(outbox(t, env.db))
			wantStatus(t, tt.call(tt.ctx), tt.code, tt.reason, tt.field)
			if len(outbox(t, env.db)) != before {
				t.Error("a refused call emitted an event")
			}
		})
	}

	t.Run("EU key sees its region and the lists for every region", func(t *testing.T) {
		resp, err := c.ListPriceLists(eu, &productpricingv1.ListPriceListsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, pl := range resp.GetPriceLists() {
			names = append(names, pl.GetName())
		}
		sort.Strings(names)
		if got := len(names); got != 4 || names[0] != "acme" || names[2] != "global" {
			t.Errorf("EU key sees %v", names)
		}
	})

	t.Run("directory down is 503", func(t *testing.T) {
		dir.mu.Lock()
		dir.err = &PeerUnavailableError{Peer: "customer", Err: errors.New("connection refused")}
		dir.mu.Unlock()
		defer func() { dir.mu.Lock(); dir.err = nil; dir.mu.Unlock() }()
		_, err := c.SimulatePrices(bg, &productpricingv1.SimulatePricesRequest{CustomerId: acmeEU.ID, CurrencyCode: "EUR", Lines: []*productpricingv1.SimulationLine{line("VALVE-100", "1", "EA")}})
		got := wantStatus(t, err, codes.Unavailable, apierr.ReasonUnavailable, "")
		if got.meta["peer"] != "customer" {
			t.Errorf("metadata %v", got.meta)
		}
		// Naming a customer needs the directory; renaming a customer's list
		// does not.
		_, err = c.UpdatePriceList(bg, &productpricingv1.UpdatePriceListRequest{
			PriceList: with(lists["global"], func(p *productpricingv1.PriceList) { p.CustomerId = boltNA.ID }), UpdateMask: mask("customer_id"),
		})
		wantStatus(t, err, codes.Unavailable, apierr.ReasonUnavailable, "")
		if _, err := c.UpdatePriceList(bg, &productpricingv1.UpdatePriceListRequest{
			PriceList: with(lists["acme"], func(p *productpricingv1.PriceList) { p.Name = "acme contract" }), UpdateMask: mask("name"),
		}); err != nil {
			t.Errorf("rename while the directory is down: %v", err)
		}
	})

	t.Run("turning a list into a customer's list checks the customer", func(t *testing.T) {
		_, err := c.UpdatePriceList(bg, &productpricingv1.UpdatePriceListRequest{
			PriceList: with(lists["eu"], func(p *productpricingv1.PriceList) { p.CustomerId = boltNA.ID }), UpdateMask: mask("customer_id"),
		})
		wantStatus(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument, "price_list.region")
		resp, err := c.UpdatePriceList(bg, &productpricingv1.UpdatePriceListRequest{
			PriceList: with(lists["eu"], func(p *productpricingv1.PriceList) { p.CustomerId = plainEU.ID }), UpdateMask: mask("customer_id"),
		})
		if err != nil || ScopeOf(resp.GetPriceList()) != ScopeCustomer {
			t.Errorf("update to a customer list: %v, %v", resp, err)
		}
	})
}

func TestServerWithCustomerService(t *testing.T) {
	customers := newFakeCustomers()
	env := startServer(t, startCustomers(t, customers))
	ctx := context.Background()
	seedPricing(t, env)
	req := &productpricingv1.SimulatePricesRequest{CustomerId: "cus_ACME", CurrencyCode: "EUR", Lines: []*productpricingv1.SimulationLine{line("RESIN-PP", "10", "KG")}}

	resp, err := env.client.SimulatePrices(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetLines()[0].GetPriceListScope() != ScopeCustomer || resp.GetTotal().GetAmount() != "24.00" {
		t.Errorf("simulate through the customer service: %v", resp)
	}

	customers.fail.Store(int32(codes.Unavailable))
	_, err = env.client.SimulatePrices(ctx, req)
	wantStatus(t, err, codes.Unavailable, apierr.ReasonUnavailable, "")

	customers.fail.Store(int32(codes.Internal))
	_, err = env.client.SimulatePrices(ctx, req)
	got := wantStatus(t, err, codes.Internal, apierr.ReasonInternal, "")
	if got.msg != "internal error" {
		t.Errorf("internal error leaks %q", got.msg)
	}
}

func TestServerInternalErrorsDoNotLeak(t *testing.T) {
	env := startServer(t, newDirectory())
	if err := env.db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := env.client.GetProduct(context.Background(), &productpricingv1.GetProductRequest{Sku: "VALVE-100"})
	got := wantStatus(t, err, codes.Internal, apierr.ReasonInternal, "")
	if got.msg != "internal error" {
		t.Errorf("message %q leaks internals", got.msg)
	}
}
