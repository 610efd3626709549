package platform

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/apierr"
)

const (
	createKeyMethod = integrationv1.ApiKeyService_CreateApiKey_FullMethodName
	sealScope       = "key_admin|" + createKeyMethod
	apiSecret       = "mr_key_01J_abcdefghijklmnopqrstuvwxyz234567"
)

func createKeyAnswer() *integrationv1.CreateApiKeyResponse {
	return &integrationv1.CreateApiKeyResponse{
		ApiKey: &integrationv1.ApiKey{Id: "key_01J", DisplayName: "erp", Role: 2},
		Secret: apiSecret,
	}
}

// TestKeptAnswerSealsSecrets: an answer with a debug_redact field is kept
// sealed for the caller's credential, opens for that caller only, and is
// kept with the secret cleared for a caller without a bearer secret.
func TestKeptAnswerSealsSecrets(t *testing.T) {
	resp := createKeyAnswer()
	rec, err := record(resp, nil, "bearer-of-admin", sealScope, "k-1")
	if err != nil {
		t.Fatal(err)
	}
	if !isSealedAnswer(rec.Response) {
		t.Fatalf("the kept answer is not sealed: % x", rec.Response[:8])
	}
	if bytes.Contains(rec.Response, []byte(apiSecret)) || bytes.Contains(rec.Response, []byte("erp")) {
		t.Fatal("the sealed answer holds the secret or the key in the clear")
	}

	got, err := replay(createKeyMethod, rec, "bearer-of-admin", sealScope, "k-1")
	if err != nil {
		t.Fatalf("replay by the same caller: %v", err)
	}
	if !proto.Equal(got.(proto.Message), resp) {
		t.Fatalf("replayed %v, want %v", got, resp)
	}

	for _, tt := range []struct{ name, bearer, scope, key string }{
		{"another credential", "bearer-of-someone-else", sealScope, "k-1"},
		{"no credential", "", sealScope, "k-1"},
		{"another idempotency key", "bearer-of-admin", sealScope, "k-2"},
		{"another scope", "bearer-of-admin", "key_other|" + createKeyMethod, "k-1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := replay(createKeyMethod, rec, tt.bearer, tt.scope, tt.key)
			if status.Code(err) != codes.FailedPrecondition || apierr.Reason(err) != apierr.ReasonIdempotencySealed {
				t.Fatalf("replay gave %v, want FAILED_PRECONDITION %s", err, apierr.ReasonIdempotencySealed)
			}
		})
	}

	tampered := bytes.Clone(rec.Response)
	tampered[len(tampered)-1] ^= 1
	rec.Response = tampered
	if _, err := replay(createKeyMethod, rec, "bearer-of-admin", sealScope, "k-1"); apierr.Reason(err) != apierr.ReasonIdempotencySealed {
		t.Fatalf("a tampered answer replayed: %v", err)
	}

	cleared, err := record(resp, nil, "", sealScope, "k-1")
	if err != nil {
		t.Fatal(err)
	}
	if isSealedAnswer(cleared.Response) || bytes.Contains(cleared.Response, []byte(apiSecret)) {
		t.Fatal("without a bearer secret the answer must be kept with its secret cleared")
	}
	got, err = replay(createKeyMethod, cleared, "", sealScope, "k-1")
	if err != nil {
		t.Fatal(err)
	}
	want := createKeyAnswer()
	want.Secret = ""
	if !proto.Equal(got.(proto.Message), want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
	if resp.GetSecret() != apiSecret {
		t.Fatal("keeping the answer changed the caller's response")
	}
}

// TestKeptAnswerWithoutSecretsIsPlain: answers without a debug_redact field
// set are kept as their plain encoding, readable by any replay.
func TestKeptAnswerWithoutSecretsIsPlain(t *testing.T) {
	for _, m := range []proto.Message{
		&integrationv1.GetApiKeyResponse{ApiKey: &integrationv1.ApiKey{Id: "key_1", DisplayName: "crm"}},
		&integrationv1.CreateApiKeyResponse{ApiKey: &integrationv1.ApiKey{Id: "key_1"}}, // secret field present in the type, not set
		&integrationv1.ListApiKeysResponse{ApiKeys: []*integrationv1.ApiKey{{Id: "key_1"}, {Id: "key_2"}}},
	} {
		rec, err := record(m, nil, "bearer", sealScope, "k")
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := proto.Marshal(m)
		if !bytes.Equal(rec.Response, plain) {
			t.Errorf("%T kept as % x, want its plain encoding", m, rec.Response)
		}
	}
	if !mayHoldSecret((&integrationv1.RotateSubscriptionSecretResponse{}).ProtoReflect().Descriptor()) {
		t.Error("RotateSubscriptionSecretResponse declares a secret")
	}
	if mayHoldSecret((&integrationv1.ListApiKeysResponse{}).ProtoReflect().Descriptor()) {
		t.Error("ListApiKeysResponse declares no secret")
	}
}
