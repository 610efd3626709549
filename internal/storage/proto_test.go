package storage

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

// A record written with the generated methods is the bytes proto.Marshal
// writes, and reads back equal, so stores keep reading what older builds
// wrote and the other way round.
func TestProtoRecordsMatchTheStandardEncoding(t *testing.T) {
	o := &orderv1.Order{
		Id: "ord_01", CustomerId: "cus_01", CurrencyCode: "EUR", ShipToRegion: "eu",
		Status:      orderv1.OrderStatus_ORDER_STATUS_ACCEPTED,
		Lines:       []*orderv1.OrderLine{{Sku: "VALVE-BV25", Quantity: &typev1.Quantity{Value: "2", Unit: "CASE"}}, {Sku: "Ωmega", Quantity: &typev1.Quantity{Value: "1.5", Unit: "M"}}},
		ExternalRef: &typev1.ExternalRef{System: "crm", Id: "opp-7"},
		CreateTime:  timestamppb.New(time.Date(2026, 11, 29, 9, 0, 0, 5, time.UTC)),
	}
	got, err := MarshalProto(o)
	if err != nil {
		t.Fatal(err)
	}
	want, err := proto.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("generated encoding differs from proto.Marshal:\n%x\n%x", got, want)
	}
	back := &orderv1.Order{}
	if err := UnmarshalProto(got, back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, o) {
		t.Fatalf("read back %v, want %v", back, o)
	}
	if err := UnmarshalProto(got[:len(got)-3], &orderv1.Order{}); err == nil {
		t.Fatal("a truncated record decoded without error")
	}
}

// A message without generated methods goes through the standard library.
func TestProtoRecordsOfOtherMessages(t *testing.T) {
	ts := timestamppb.New(time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC))
	b, err := MarshalProto(ts)
	if err != nil {
		t.Fatal(err)
	}
	back := &timestamppb.Timestamp{}
	if err := UnmarshalProto(b, back); err != nil || !proto.Equal(back, ts) {
		t.Fatalf("read back %v (%v), want %v", back, err, ts)
	}
}
