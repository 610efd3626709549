package customer_test

import (
	"slices"
	"testing"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	"github.com/millrace/millrace/internal/demo"
	"github.com/millrace/millrace/internal/storage"
)

// TestDemoCustomers loads the demo customers twice through the API: the
// second load finds every account by its Salesforce id and changes nothing.
func TestDemoCustomers(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	first, err := demo.LoadCustomers(admin(t), e.c)
	if err != nil {
		t.Fatal(err)
	}
	events := len(e.events(t))

	second, err := demo.LoadCustomers(admin(t), e.c)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != len(first) || len(e.all(t)) != len(first) || len(e.events(t)) != events {
		t.Fatalf("reload: %d and %d customers returned, %d stored, %d new events", len(first), len(second), len(e.all(t)), len(e.events(t))-events)
	}
	for i := range first {
		if first[i].GetId() != second[i].GetId() || first[i].GetEtag() != second[i].GetEtag() {
			t.Errorf("%s changed on reload", first[i].GetDisplayName())
		}
	}

	var regions, tiers []string
	for _, c := range first {
		regions, tiers = append(regions, c.GetRegion()), append(tiers, c.GetTier())
		if len(c.GetExternalRefs()) == 0 || c.GetExternalRefs()[0].GetSystem() != "salesforce" || c.GetBillingAddress() == nil {
			t.Errorf("%s: refs %v address %v", c.GetDisplayName(), c.GetExternalRefs(), c.GetBillingAddress())
		}
	}
	for _, want := range []string{"eu", "na", "gold", "silver"} {
		if !slices.Contains(regions, want) && !slices.Contains(tiers, want) {
			t.Errorf("no %s customer in the demo set", want)
		}
	}

	// The group parent carries the limit its subsidiaries share.
	group := first[0]
	h, err := e.c.GetCustomerHierarchy(admin(t), &customerv1.GetCustomerHierarchyRequest{Id: group.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.GetChildren()); n < 2 || n > 3 || !h.GetRoot().GetHasCreditLimit() {
		t.Fatalf("group %s: %d subsidiaries, limit %v", group.GetDisplayName(), n, h.GetRoot().GetHasCreditLimit())
	}
	for _, child := range h.GetChildren() {
		chk, err := e.c.CheckCredit(admin(t), &customerv1.CheckCreditRequest{Id: child.GetId(), Amount: money(group.GetCreditLimit().GetCurrencyCode(), "1000")})
		if err != nil {
			t.Fatal(err)
		}
		if chk.GetDecision() != customerv1.CreditDecision_CREDIT_DECISION_APPROVED || chk.GetPosition().GetCreditAccountId() != group.GetId() {
			t.Errorf("%s: %v on credit account %s", child.GetDisplayName(), chk.GetDecision(), chk.GetPosition().GetCreditAccountId())
		}
	}
}
