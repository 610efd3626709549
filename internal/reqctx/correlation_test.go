package reqctx

import (
	"strings"
	"testing"
)

func TestValidCorrelationID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"corr-42", true},
		{"A.b_c:d/e-F9", true},
		{strings.Repeat("a", MaxCorrelationIDLen), true},
		{"", false},
		{strings.Repeat("a", MaxCorrelationIDLen+1), false},
		{"has space", false},
		{"semi;colon", false},
		{"new\nline", false},
		{"ünïcode", false},
		{"quote\"", false},
	}
	for _, tt := range tests {
		if got := ValidCorrelationID(tt.id); got != tt.want {
			t.Errorf("ValidCorrelationID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
	if id := NewCorrelationID(); !ValidCorrelationID(id) {
		t.Errorf("a new correlation id %q is not valid", id)
	}
}
