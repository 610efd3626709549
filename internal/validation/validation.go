// Package validation checks requests against the rules declared in the
// contracts (protovalidate) and answers with InvalidArgument and one field
// violation per broken rule, each naming the field's path.
package validation

import (
	"errors"
	"fmt"
	"sync"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	"github.com/millrace/millrace/internal/apierr"
)

var (
	once      sync.Once
	validator protovalidate.Validator
	initErr   error
)

func get() (protovalidate.Validator, error) {
	once.Do(func() { validator, initErr = protovalidate.New() })
	return validator, initErr
}

// PerItem lists the batch methods whose items are validated one by one by
// the handler, so that one bad item fails alone instead of failing the
// whole batch; the interceptor skips them.
var PerItem = map[string]bool{
	customerv1.CustomerService_BatchUpsertCustomers_FullMethodName: true,
}

// Check validates msg against its contract rules.
func Check(msg proto.Message) error { return CheckAt("", msg) }

// CheckAt validates msg and prefixes every field path with prefix, for
// items of a batch ("items[3]").
func CheckAt(prefix string, msg proto.Message) error {
	v, err := get()
	if err != nil {
		return fmt.Errorf("set up validation: %w", err)
	}
	err = v.Validate(msg)
	if err == nil {
		return nil
	}
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		// A rule that cannot be evaluated is a bug in the contract, not the
		// caller's fault; the details stay in the server log.
		return fmt.Errorf("validate %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	violations := make([]apierr.FieldViolation, 0, len(ve.Violations))
	for _, viol := range ve.Violations {
		field := protovalidate.FieldPathString(viol.Proto.GetField())
		switch {
		case prefix != "" && field != "":
			field = prefix + "." + field
		case prefix != "":
			field = prefix
		case field == "":
			field = string(msg.ProtoReflect().Descriptor().Name())
		}
		violations = append(violations, apierr.FieldViolation{Field: field, Description: viol.Proto.GetMessage()})
	}
	return apierr.InvalidFields(violations...)
}
