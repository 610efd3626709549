// Package webhooks delivers Millrace events to CRMs and other receivers as
// signed webhooks: subscriptions with event-type filters, durable
// per-subscription queues, retries, dead letters, replays, and the
// SubscriptionService that manages them.
//
// # Flow
//
// A Dispatcher consumes events from the bus (ConsumeBatch, subscribed as
// ConsumerName with SubscribeBatch) and writes one delivery per matching
// subscription into the integration store — for every event of a batch and
// all subscriptions in one transaction, idempotently by (subscription,
// event id), whatever the subscription's status. Run attempts
// pending deliveries of ACTIVE subscriptions; PAUSED and DISABLED ones keep
// theirs queued.
//
// # Requests
//
// Each request is a POST of the CloudEvent as JSON in structured mode
// (Content-Type application/cloudevents+json): the CloudEvents attributes,
// data as the event message in protojson (lowerCamelCase), and the
// extensions correlationid, causationid, traceparent and sequence. It is
// signed per the Standard Webhooks specification (package verify):
// webhook-id is the delivery id, the same on every retry; webhook-timestamp
// is the attempt's time; webhook-signature is "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>", one per live secret. The traceparent and
// X-Correlation-Id headers carry the event's trace and correlation.
//
// # Retries and order
//
// A 2xx within Options.Timeout is success. Anything else — a redirect
// (never followed), 4xx, 5xx, timeout, refused connection — is retried after
// each step of Options.Schedule (5s, 5m, 30m, 2h, 5h, 10h, 10h by default),
// each wait drawn uniformly from [0, step] (full jitter), or after the
// receiver's Retry-After when that is longer (capped at
// Options.MaxRetryAfter). Per subscription, the events of one subject (an
// aggregate) are attempted one at a time in queue order — a later event
// waits while an earlier one retries — and different subjects proceed in
// parallel. A subscription has at most Options.PerSubscription attempts in
// flight, one while it is failing, and the process at most Options.Workers,
// handed out round-robin across subscriptions: a slow or dead endpoint
// holds only its own slots.
//
// # Dead letters and disabling
//
// A delivery whose retries are exhausted becomes a dead letter, and its
// subject's next event proceeds. Replaying a dead letter queues the same
// delivery again — same webhook-id, so a receiver that did process it (and
// answered too late) drops the duplicate — with a fresh retry series, at the
// end of its lane. A subscription failing without a single success for
// Options.DisableAfter becomes DISABLED; its deliveries stay queued and new
// events keep queueing. Setting it ACTIVE again (UpdateSubscription)
// delivers from where it stopped, in order; each lane's head gets a fresh
// retry series.
//
// ReplaySubscription queues the events of a time range again, read from an
// EventSource, as new deliveries with new webhook-ids: the point of a range
// replay is that the receiver processes them again. Events still pending
// for the subscription are not queued twice.
//
// # Secrets
//
// A signing secret is "whsec_" and the base64 of 32 random bytes, returned
// by CreateSubscription and RotateSecret only. It cannot be stored hashed —
// signing needs it — so it is sealed with AES-256-GCM under
// Options.SecretKey (bound to its subscription id) and opened only to sign.
// Secrets are never logged or returned again. After a rotation the previous
// secret signs alongside the new one for Options.SecretOverlap (24h).
//
// # URL policy
//
// Endpoint URLs must be http or https. Unless Options.AllowPrivate, a URL
// whose host is or resolves to a private, loopback, link-local or otherwise
// internal address is refused when a subscription is created or updated,
// and every connection's actual address is checked again at dial time, so
// DNS rebinding cannot reach an internal address either.
//
// # Durability
//
// Everything that matters is in the store. The scheduler's memory (which
// lanes have pending deliveries and when their heads are due) is rebuilt by
// Run, so deliveries survive restarts; an attempt cut short by shutdown is
// not recorded and is made again after the next start (same webhook-id).
// Finished deliveries are removed after Options.Retention.
package webhooks
