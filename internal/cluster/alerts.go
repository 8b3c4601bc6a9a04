package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/detect"
)

// alertStreamConfig is the stream detection workers send to and the
// journal node reads from.
func (c *Conn) alertStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        AlertStream,
		Description: "vigil: alerts and incident updates, each once",
		Subjects:    []string{"alerts.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.opts.Replicas,
		MaxAge:      c.opts.MaxAge,
		Duplicates:  c.opts.DuplicateWindow,
		Discard:     jetstream.DiscardNew,
		// A tenant's holder record (fence.go) replaces the previous one
		// and never expires.
		AllowRollup: true,
		AllowMsgTTL: true,
		// A flush of alerts goes out as one atomic batch (fence.go).
		AllowAtomicPublish: true,
	}
}

func (c *Conn) ensureAlertStream(ctx context.Context) error {
	s, err := c.js.CreateOrUpdateStream(ctx, c.alertStreamConfig())
	if err != nil {
		return fmt.Errorf("alert stream: %w", err)
	}
	// A server older than 2.12 ignores allow_atomic, and would store a
	// batch's messages as single publishes: alerts then go one at a time.
	if !s.CachedInfo().Config.AllowAtomicPublish {
		if c.noBatches.CompareAndSwap(false, true) {
			c.opts.Logger.Warn("cluster: the alert stream takes no atomic batches (NATS servers older than 2.12); alerts go out one at a time", "stream", AlertStream)
		}
	}
	return nil
}

// updateKinds are the incident message types (AlertMessage.Type after
// "incident.") and the changes they carry.
var updateKinds = map[string]detect.UpdateKind{
	"opened": detect.Opened, "grew": detect.Grew,
	"severity_changed": detect.SeverityChanged, "impact_changed": detect.ImpactChanged,
}

// Update is an incident message as the update a local pipeline would have
// given its sink, with the incident's alert ids; ok is false for an alert
// message.
func (m *AlertMessage) Update() (u detect.Update, ok bool, err error) {
	kind, isInc := strings.CutPrefix(m.Type, "incident.")
	if !isInc {
		return detect.Update{}, false, nil
	}
	k, known := updateKinds[kind]
	switch {
	case !known:
		return detect.Update{}, true, fmt.Errorf("incident update of unknown type %q", m.Type)
	case m.Incident == nil || m.Incident.ID == "":
		return detect.Update{}, true, errors.New("incident update without an incident")
	}
	ids := m.AlertIDs
	if ids == nil {
		ids = []string{}
	}
	return detect.Update{Kind: k, Incident: m.Incident, AlertIDs: ids}, true, nil
}

// Grouping is the incident list of a message of GroupingType (never nil);
// ok is false for other messages.
func (m *AlertMessage) Grouping() (ids []string, ok bool) {
	if m.Type != GroupingType {
		return nil, false
	}
	if m.IncidentIDs == nil {
		return []string{}, true
	}
	return m.IncidentIDs, true
}

// FollowAlerts reads a tenant's alert stream messages after stream
// sequence after, in order, until ctx ends, handing each to deliver with
// its sequence. A message that does not decode, or names another tenant,
// is handed over with its error (it stays in the stream); an error from
// deliver ends the follow. Connection trouble is retried.
func (c *Conn) FollowAlerts(ctx context.Context, tenant string, after uint64, deliver func(seq uint64, m *AlertMessage, err error) error) error {
	log := c.opts.Logger.With("tenant", tenant)
	if err := retryUnavailable(ctx, log, "alert stream", c.ensureAlertStream); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	pos := after
	for ctx.Err() == nil {
		var cons jetstream.Consumer
		err := retryUnavailable(ctx, log, "alert stream consumer", func(ctx context.Context) error {
			// The holder records (fence.go) are the workers' business.
			cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{"alerts." + token(tenant) + ".alert", "alerts." + token(tenant) + ".incident"},
				DeliverPolicy: jetstream.DeliverAllPolicy}
			if pos > 0 {
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, pos+1
			}
			var err error
			cons, err = c.js.OrderedConsumer(ctx, AlertStream, cfg)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for ctx.Err() == nil {
			batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("cluster: alert stream fetch failed; reading on from a new consumer", "position", pos, "err", err)
				}
				break
			}
			for msg := range batch.Messages() {
				md, err := msg.Metadata()
				if err != nil {
					return fmt.Errorf("cluster: alert stream message metadata: %w", err)
				}
				seq := md.Sequence.Stream
				if seq <= pos {
					continue
				}
				var m AlertMessage
				err = json.Unmarshal(msg.Data(), &m)
				switch {
				case err != nil:
					err = fmt.Errorf("alert stream message %d: %w", seq, err)
				case m.Tenant != tenant:
					err = fmt.Errorf("alert stream message %d names tenant %q, its subject %s", seq, m.Tenant, msg.Subject())
				}
				if err != nil {
					if derr := deliver(seq, nil, err); derr != nil {
						return derr
					}
				} else if derr := deliver(seq, &m, nil); derr != nil {
					return derr
				}
				pos = seq
			}
			if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) &&
				!isTimeout(err) && !errors.Is(err, nats.ErrNoResponders) {
				log.Warn("cluster: alert stream fetch ended with an error; reading on from a new consumer", "position", pos, "err", err)
				break
			}
		}
	}
	return nil
}
