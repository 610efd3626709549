package natsbus

import (
	"slices"
	"testing"
)

func TestFilterSubjects(t *testing.T) {
	b := &Bus{prefix: "millrace.events."}
	tests := []struct {
		name    string
		filters []string
		want    []string
		wantErr bool
	}{
		{"no filter", nil, nil, false},
		{"exact", []string{"millrace.events.v1.OrderHeld"}, []string{"millrace.events.millrace.events.v1.OrderHeld"}, false},
		{"prefix of whole words", []string{"millrace.events.v1.*"}, []string{"millrace.events.millrace.events.v1.>"}, false},
		{"prefix within a word narrows to its last whole word", []string{"millrace.events.v1.Order*"}, []string{"millrace.events.millrace.events.v1.>"}, false},
		{"star is everything", []string{"millrace.events.v1.OrderHeld", "*"}, nil, false},
		{"prefix without a whole word is everything", []string{"millrace*"}, nil, false},
		{"covered filters are dropped", []string{"millrace.events.v1.OrderHeld", "millrace.events.*", "millrace.events.v1.Order*", "millrace.events.*"}, []string{"millrace.events.millrace.events.>"}, false},
		{"disjoint filters stay", []string{"a.B", "c.*"}, []string{"millrace.events.a.B", "millrace.events.c.>"}, false},
		{"empty word", []string{"millrace..OrderHeld"}, nil, true},
		{"wildcard inside", []string{"millrace.>.OrderHeld"}, nil, true},
		{"empty filter", []string{""}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.filterSubjects(tt.filters)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Errorf("filterSubjects(%q) = %q, %v; want %q, error %v", tt.filters, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
