// Package validation checks requests against the rules declared in the
// contracts (protovalidate) and answers with InvalidArgument and one field
// violation per broken rule, each naming the field's path.
package validation

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/pbvalidate"
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

// pool holds the violation lists of generated validators between requests.
var pool = sync.Pool{New: func() any { return new(pbvalidate.Violations) }}

// Check validates msg against its contract rules.
func Check(msg proto.Message) error { return CheckAt("", msg) }

// CheckAt validates msg and prefixes every field path with prefix, for
// items of a batch ("items[3]").
func CheckAt(prefix string, msg proto.Message) error {
	// The generated validator reports what protovalidate reports, several
	// times faster; it cannot follow an update's field mask, and messages
	// with rules it does not handle have none.
	if gen, ok := msg.(pbvalidate.Validator); ok && updateFilter(msg) == nil {
		return checkGenerated(prefix, msg, gen)
	}
	return checkProtovalidate(prefix, msg)
}

func checkProtovalidate(prefix string, msg proto.Message) error {
	v, err := get()
	if err != nil {
		return fmt.Errorf("set up validation: %w", err)
	}
	var opts []protovalidate.ValidationOption
	if f := updateFilter(msg); f != nil {
		opts = append(opts, protovalidate.WithFilter(f))
	}
	err = v.Validate(msg, opts...)
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
		field := fieldOf(prefix, protovalidate.FieldPathString(viol.Proto.GetField()), msg)
		violations = append(violations, apierr.FieldViolation{Field: field, Description: describe(viol.Proto.GetMessage())})
	}
	return apierr.InvalidFields(violations...)
}

func checkGenerated(prefix string, msg proto.Message, gen pbvalidate.Validator) error {
	vs := pool.Get().(*pbvalidate.Violations)
	defer pool.Put(vs)
	vs.Reset()
	gen.ValidateRules(vs)
	if len(vs.List) == 0 {
		return nil
	}
	violations := make([]apierr.FieldViolation, 0, len(vs.List))
	for _, viol := range vs.List {
		violations = append(violations, apierr.FieldViolation{Field: fieldOf(prefix, viol.Field, msg), Description: describe(viol.Message)})
	}
	return apierr.InvalidFields(violations...)
}

// fieldOf names a violated field in the answer: its path under prefix, or
// the message's name for a rule on the message itself.
func fieldOf(prefix, field string, msg proto.Message) string {
	switch {
	case prefix != "" && field != "":
		return prefix + "." + field
	case prefix != "":
		return prefix
	case field == "":
		return string(msg.ProtoReflect().Descriptor().Name())
	}
	return field
}

// updateFilter makes validation of an update request follow its field
// mask: a PATCH that names one field is checked on that field, not refused
// for the fields it leaves alone. It returns nil for other requests, and
// for masks naming "*", which are validated whole. Services validate the
// merged record themselves.
func updateFilter(msg proto.Message) protovalidate.Filter {
	req := msg.ProtoReflect()
	fields := req.Descriptor().Fields()
	maskFD := fields.ByName("update_mask")
	if maskFD == nil || maskFD.Message() == nil || maskFD.Message().FullName() != "google.protobuf.FieldMask" || !req.Has(maskFD) {
		return nil
	}
	var resFD protoreflect.FieldDescriptor
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd != maskFD && fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
			if resFD != nil {
				return nil // more than one resource: validate whole
			}
			resFD = fd
		}
	}
	if resFD == nil || !req.Has(resFD) {
		return nil
	}
	paths := req.Get(maskFD).Message().Interface().(*fieldmaskpb.FieldMask).GetPaths()
	if len(paths) == 0 {
		return nil
	}
	// allowed maps each message on a masked path to the fields the mask
	// names in it; full holds messages the mask names whole.
	allowed := map[proto.Message]map[protoreflect.Name]bool{}
	full := map[proto.Message]bool{}
	root := req.Get(resFD).Message()
	allowed[root.Interface()] = map[protoreflect.Name]bool{}
	for _, p := range paths {
		if p == "*" {
			return nil
		}
		cur := root
		segs := strings.Split(p, ".")
		for i, seg := range segs {
			fds := cur.Descriptor().Fields()
			fd := fds.ByName(protoreflect.Name(seg))
			if fd == nil {
				fd = fds.ByJSONName(seg)
			}
			if fd == nil {
				break // unknown path: the service names it
			}
			set := allowed[cur.Interface()]
			if set == nil {
				set = map[protoreflect.Name]bool{}
				allowed[cur.Interface()] = set
			}
			set[fd.Name()] = true
			if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() || !cur.Has(fd) {
				break
			}
			next := cur.Get(fd).Message()
			if i == len(segs)-1 {
				full[next.Interface()] = true
				break
			}
			cur = next
		}
	}
	return protovalidate.FilterFunc(func(m protoreflect.Message, d protoreflect.Descriptor) bool {
		fd, ok := d.(protoreflect.FieldDescriptor)
		if !ok {
			return true
		}
		key := m.Interface()
		if full[key] {
			return true
		}
		if set, ok := allowed[key]; ok {
			return set[fd.Name()]
		}
		return true
	})
}
