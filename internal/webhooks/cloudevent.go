package webhooks

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
)

// ContentType is the Content-Type of every webhook request: a CloudEvent
// in the structured mode of the CloudEvents HTTP binding.
const ContentType = "application/cloudevents+json; charset=utf-8"

// cloudEvent is the JSON body of a webhook: the CloudEvents 1.0 attributes,
// the event message as data, and Millrace's extensions.
type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time,omitempty"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data,omitempty"`
	CorrelationID   string          `json:"correlationid,omitempty"`
	CausationID     string          `json:"causationid,omitempty"`
	Traceparent     string          `json:"traceparent,omitempty"`
	Sequence        uint64          `json:"sequence,omitempty"`
}

// cloudEventJSON renders an envelope as the webhook body. data is the event
// message in protojson (lowerCamelCase names, as the REST API uses). A
// message whose type this build does not know is sent as protojson renders
// an unresolvable Any, so a delivery never fails for that reason.
func cloudEventJSON(env *eventsv1.Envelope) ([]byte, error) {
	ce := cloudEvent{
		SpecVersion:     env.GetSpecVersion(),
		ID:              env.GetId(),
		Source:          env.GetSource(),
		Type:            env.GetType(),
		Subject:         env.GetSubject(),
		DataContentType: "application/json",
		CorrelationID:   env.GetCorrelationId(),
		CausationID:     env.GetCausationId(),
		Traceparent:     env.GetTraceparent(),
		Sequence:        env.GetSequence(),
	}
	if ce.SpecVersion == "" {
		ce.SpecVersion = events.SpecVersion
	}
	if env.GetTime() != nil {
		ce.Time = env.GetTime().AsTime().UTC().Format(time.RFC3339Nano)
	}
	if data := env.GetData(); data != nil {
		if msg, err := data.UnmarshalNew(); err == nil {
			b, err := protojson.Marshal(msg)
			if err != nil {
				return nil, err
			}
			ce.Data = b
		} else {
			b, err := json.Marshal(map[string]string{"@type": data.GetTypeUrl(), "value": base64.StdEncoding.EncodeToString(data.GetValue())})
			if err != nil {
				return nil, err
			}
			ce.Data = b
		}
	}
	return json.Marshal(ce)
}
