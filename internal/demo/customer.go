package demo

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

// demoCustomer is one account of the demo set. parent names another
// entry's key; the loader turns it into that account's Millrace id.
type demoCustomer struct {
	key      string
	parent   string
	customer *customerv1.Customer
}

func addr(city, state, postal, country string, lines ...string) *typev1.Address {
	return &typev1.Address{Lines: lines, City: city, State: state, PostalCode: postal, CountryCode: country}
}

func sf(id string) *typev1.ExternalRef { return &typev1.ExternalRef{System: "salesforce", Id: id} }

func sap(id string) *typev1.ExternalRef { return &typev1.ExternalRef{System: "sap", Id: id} }

func limit(currency, amount string) *typev1.Money {
	return &typev1.Money{CurrencyCode: currency, Amount: amount}
}

// demoCustomers is the demo set, parents before their subsidiaries: a
// European group whose parent carries a group credit limit shared by its
// three subsidiaries, an independent European account, and two North
// American accounts with limits of their own. Tiers are gold and silver, so
// tier price lists have someone to apply to.
func demoCustomers() []demoCustomer {
	return []demoCustomer{
		{key: "rheinwerk", customer: &customerv1.Customer{
			DisplayName: "Rheinwerk Group", LegalName: "Rheinwerk Group AG", Region: "eu", Tier: "gold",
			Email: "procurement@rheinwerk.example", Phone: "+49 69 2400 100", CurrencyCode: "EUR",
			BillingAddress:  addr("Frankfurt am Main", "Hessen", "60311", "DE", "Mainzer Landstraße 50"),
			ShippingAddress: addr("Frankfurt am Main", "Hessen", "60311", "DE", "Mainzer Landstraße 50", "Tor 3"),
			ExternalRefs:    []*typev1.ExternalRef{sf("0015g00000RWGRPAA1"), sap("1000100")},
			CreditLimit:     limit("EUR", "250000.00"), PaymentTerms: "NET30",
		}},
		{key: "rheinwerk-antrieb", parent: "rheinwerk", customer: &customerv1.Customer{
			DisplayName: "Rheinwerk Antriebstechnik", LegalName: "Rheinwerk Antriebstechnik GmbH", Region: "eu", Tier: "gold",
			Email: "einkauf@antrieb.rheinwerk.example", Phone: "+49 711 8800 20", CurrencyCode: "EUR",
			BillingAddress:  addr("Frankfurt am Main", "Hessen", "60311", "DE", "Mainzer Landstraße 50"),
			ShippingAddress: addr("Stuttgart", "Baden-Württemberg", "70565", "DE", "Industriestraße 12"),
			ExternalRefs:    []*typev1.ExternalRef{sf("0015g00000RWANTAA2"), sap("1000101")},
			PaymentTerms:    "NET30",
		}},
		{key: "rheinwerk-logistik", parent: "rheinwerk", customer: &customerv1.Customer{
			DisplayName: "Rheinwerk Logistik", LegalName: "Rheinwerk Logistik GmbH", Region: "eu", Tier: "silver",
			Email: "dispo@logistik.rheinwerk.example", Phone: "+49 40 3010 77", CurrencyCode: "EUR",
			BillingAddress:  addr("Frankfurt am Main", "Hessen", "60311", "DE", "Mainzer Landstraße 50"),
			ShippingAddress: addr("Hamburg", "Hamburg", "21129", "DE", "Hafenstraße 8", "Halle 4"),
			ExternalRefs:    []*typev1.ExternalRef{sf("0015g00000RWLOGAA3"), sap("1000102")},
			PaymentTerms:    "NET30",
		}},
		{key: "rheinwerk-polska", parent: "rheinwerk", customer: &customerv1.Customer{
			DisplayName: "Rheinwerk Polska", LegalName: "Rheinwerk Polska Sp. z o.o.", Region: "eu", Tier: "silver",
			Email: "zakupy@rheinwerk.example.pl", Phone: "+48 71 300 4500", CurrencyCode: "EUR",
			BillingAddress:  addr("Wrocław", "Dolnośląskie", "54-613", "PL", "ul. Fabryczna 16"),
			ShippingAddress: addr("Wrocław", "Dolnośląskie", "54-613", "PL", "ul. Fabryczna 16"),
			ExternalRefs:    []*typev1.ExternalRef{sf("0015g00000RWPOLAA4"), sap("1000103")},
			PaymentTerms:    "NET45",
		}},
		{key: "nordlicht", customer: &customerv1.Customer{
			DisplayName: "Nordlicht Maschinen", LegalName: "Nordlicht Maschinen GmbH", Region: "eu", Tier: "silver",
			Email: "bestellung@nordlicht.example", Phone: "+49 421 55 66 0", CurrencyCode: "EUR",
			BillingAddress:  addr("Bremen", "Bremen", "28197", "DE", "Am Waller Freihafen 3"),
			ShippingAddress: addr("Bremen", "Bremen", "28197", "DE", "Am Waller Freihafen 3"),
			ExternalRefs:    []*typev1.ExternalRef{sf("0015g00000NORDLAA5"), sap("1000200")},
			CreditLimit:     limit("EUR", "40000.00"), PaymentTerms: "NET14",
		}},
		{key: "great-lakes", customer: &customerv1.Customer{
			DisplayName: "Great Lakes Fabrication", LegalName: "Great Lakes Fabrication Inc.", Region: "na", Tier: "gold",
			Email: "purchasing@greatlakesfab.example", Phone: "+1 216 555 0142", CurrencyCode: "USD",
			BillingAddress:  addr("Cleveland", "OH", "44114", "US", "1300 East 9th Street", "Suite 400"),
			ShippingAddress: addr("Cleveland", "OH", "44127", "US", "4800 Train Avenue", "Dock 2"),
			ExternalRefs:    []*typev1.ExternalRef{sf("0015g00000GLFABAA6"), sap("2000100")},
			CreditLimit:     limit("USD", "150000.00"), PaymentTerms: "NET45",
		}},
		{key: "cascade", customer: &customerv1.Customer{
			DisplayName: "Cascade Tooling", LegalName: "Cascade Tooling LLC", Region: "na", Tier: "silver",
			Email: "orders@cascadetooling.example", Phone: "+1 503 555 0187", CurrencyCode: "USD",
			BillingAddress:  addr("Portland", "OR", "97210", "US", "2250 NW Front Avenue"),
			ShippingAddress: addr("Portland", "OR", "97210", "US", "2250 NW Front Avenue"),
			ExternalRefs:    []*typev1.ExternalRef{sf("0015g00000CASTLAA7"), sap("2000200")},
			CreditLimit:     limit("USD", "25000.00"), PaymentTerms: "NET30",
		}},
	}
}

// LoadCustomers creates the demo customers through the public API and
// returns them in the order above: the Rheinwerk group parent and its three
// subsidiaries (region eu, one EUR group limit on the parent), Nordlicht
// (eu), Great Lakes Fabrication and Cascade Tooling (na). Every account is
// upserted by its Salesforce id, so loading again leaves existing accounts
// as they are (UNCHANGED) and adds nothing twice. The client must carry an
// admin key: the set writes ERP-owned fields (credit limits, terms).
func LoadCustomers(ctx context.Context, c customerv1.CustomerServiceClient) ([]*customerv1.Customer, error) {
	set := demoCustomers()
	ids := make(map[string]string, len(set))
	out := make([]*customerv1.Customer, 0, len(set))
	for _, d := range set {
		cu := proto.Clone(d.customer).(*customerv1.Customer)
		if d.parent != "" {
			cu.ParentId = ids[d.parent]
		}
		resp, err := c.UpsertCustomerByExternalRef(ctx, &customerv1.UpsertCustomerByExternalRefRequest{
			ExternalRef: cu.GetExternalRefs()[0],
			Customer:    cu,
		})
		if err != nil {
			return nil, fmt.Errorf("upsert demo customer %s: %w", cu.GetDisplayName(), err)
		}
		ids[d.key] = resp.GetCustomer().GetId()
		out = append(out, resp.GetCustomer())
	}
	return out, nil
}
