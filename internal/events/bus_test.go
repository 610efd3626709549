package events_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/events/bustest"
)

func TestMain(m *testing.M) {
	// Redelivery tests wait out the retry pause several times.
	events.RetryPause = 20 * time.Millisecond
	goleak.VerifyTestMain(m)
}

func TestLocalBusContract(t *testing.T) {
	bustest.Run(t, func(*testing.T) events.Bus { return events.NewLocalBus() })
}

func TestMatches(t *testing.T) {
	tests := []struct {
		name    string
		filters []string
		typ     string
		want    bool
	}{
		{"no filter matches everything", nil, "millrace.events.v1.OrderAccepted", true},
		{"exact name", []string{"millrace.events.v1.OrderAccepted"}, "millrace.events.v1.OrderAccepted", true},
		{"exact name is not a prefix", []string{"millrace.events.v1.OrderHeld"}, "millrace.events.v1.OrderHeldAgain", false},
		{"prefix within a word", []string{"millrace.events.v1.Order*"}, "millrace.events.v1.OrderHeld", true},
		{"prefix of whole words", []string{"millrace.events.v1.*"}, "millrace.events.v1.InvoicePaid", true},
		{"prefix elsewhere", []string{"millrace.events.v1.Order*"}, "millrace.events.v1.InvoicePaid", false},
		{"star alone", []string{"*"}, "anything", true},
		{"any of several", []string{"a.B", "millrace.events.v1.Invoice*"}, "millrace.events.v1.InvoicePaid", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := events.Matches(tt.filters, tt.typ); got != tt.want {
				t.Errorf("Matches(%q, %q) = %v, want %v", tt.filters, tt.typ, got, tt.want)
			}
		})
	}
}
