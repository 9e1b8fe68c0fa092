package bluesky

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/bluesky-social/indigo/atproto/atclient"
)

// markKey is the state key of the high-water mark.
const markKey = "mark"

// mark is the high-water mark of processed notifications: the newest
// indexedAt seen, and the URIs of the processed notifications indexed at
// exactly that time. A notification is new when it is newer than Time,
// or indexed at Time with a URI not in URIs.
//
// A notification that the server indexes with a time older than the mark
// is never delivered. listNotifications pages only backwards from the
// newest, so there is no cursor to resume from instead.
type mark struct {
	Time time.Time `json:"time"`
	URIs []string  `json:"uris,omitempty"`
}

// covers reports whether the notification at t with uri was processed.
func (m *mark) covers(t time.Time, uri string) bool {
	if t.Before(m.Time) {
		return true
	}
	return t.Equal(m.Time) && slices.Contains(m.URIs, uri)
}

// advance records the notification at t with uri as processed.
func (m *mark) advance(t time.Time, uri string) {
	switch {
	case t.After(m.Time):
		m.Time = t
		m.URIs = []string{uri}
	case t.Equal(m.Time) && !slices.Contains(m.URIs, uri):
		m.URIs = append(m.URIs, uri)
	}
}

// loadMark returns the stored mark, or nil before the first poll. A mark
// that cannot be decoded is also nil, so the listener starts over as on
// its first start instead of failing on every restart.
func (l *Listener) loadMark(kv listeners.KV) (*mark, error) {
	data, found, err := kv.Get(markKey)
	if err != nil {
		return nil, fmt.Errorf("read notification mark: %w", err)
	}
	if !found {
		return nil, nil
	}
	var m mark
	if err := json.Unmarshal(data, &m); err != nil {
		l.logger().Warn("ignoring unreadable notification mark; starting from the newest notification", "error", err)
		return nil, nil
	}
	return &m, nil
}

func saveMark(kv listeners.KV, m *mark) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode notification mark: %w", err)
	}
	if err := kv.Put(markKey, data); err != nil {
		return fmt.Errorf("store notification mark: %w", err)
	}
	return nil
}

// timedNotification is a notification with its parsed indexedAt.
type timedNotification struct {
	notification
	time time.Time
}

// pollOnce runs one poll and returns the mark after it. Without a mark
// it only sets one at the newest notification, so the first start does
// not replay the account's history.
func (l *Listener) pollOnce(ctx context.Context, host listeners.Host, m *mark) (*mark, error) {
	if m == nil {
		return l.startMark(ctx, host.State())
	}
	return m, l.deliverNew(ctx, host, m)
}

// startMark stores a mark at the newest notification. An account with no
// notifications gets a zero mark, so that its first ones are delivered.
func (l *Listener) startMark(ctx context.Context, kv listeners.KV) (*mark, error) {
	page, err := l.listNotifications(ctx, "")
	if err != nil {
		return nil, err
	}

	m := &mark{}
	for _, n := range l.timed(page.Notifications) {
		m.advance(n.time, n.URI)
	}
	if err := saveMark(kv, m); err != nil {
		return nil, err
	}
	l.logger().Info("first start: bluesky notifications up to the mark are not delivered", "mark", m.Time)
	return m, nil
}

// deliverNew delivers the notifications newer than m, oldest first, and
// stores m after each delivered event. A crash between a Deliver and
// that store delivers the event again after restart, so delivery is at
// least once.
func (l *Listener) deliverNew(ctx context.Context, host listeners.Host, m *mark) error {
	fresh, err := l.fetchNew(ctx, m)
	if err != nil {
		return err
	}

	kv := host.State()
	unsaved := false
	for i := len(fresh) - 1; i >= 0; i-- {
		n := fresh[i]
		m.advance(n.time, n.URI)
		unsaved = true
		if !slices.Contains(l.reasons, n.Reason) {
			continue
		}
		host.Deliver(l.event(n))
		if err := saveMark(kv, m); err != nil {
			return err
		}
		unsaved = false
	}

	// Filtered notifications advance the mark too, so the next poll
	// stops paging at them.
	if unsaved {
		return saveMark(kv, m)
	}
	return nil
}

// fetchNew pages backwards from the newest notification until it reaches
// the mark, and returns the new notifications newest first. It reads at
// most maxPages pages.
func (l *Listener) fetchNew(ctx context.Context, m *mark) ([]timedNotification, error) {
	var fresh []timedNotification
	seen := make(map[string]bool)
	cursor := ""
	for range l.maxPages {
		page, err := l.listNotifications(ctx, cursor)
		if err != nil {
			return nil, err
		}

		reached := false
		for _, n := range l.timed(page.Notifications) {
			if n.time.Before(m.Time) {
				reached = true
				break
			}
			if m.covers(n.time, n.URI) || seen[n.URI] {
				continue
			}
			seen[n.URI] = true
			fresh = append(fresh, n)
		}

		if reached || page.Cursor == "" || len(page.Notifications) == 0 {
			return fresh, nil
		}
		cursor = page.Cursor
	}

	// NOTE: the notifications between the mark and the oldest one read
	// here are skipped, since delivering them would need more pages.
	l.logger().Warn("more new bluesky notifications than one poll reads; skipping older ones",
		"pages", l.maxPages, "limit", l.pageLimit, "mark", m.Time)
	return fresh, nil
}

// timed parses the indexedAt of each notification, in order, and drops
// (with a warning) those whose time cannot be parsed, since they cannot
// be placed against the mark.
func (l *Listener) timed(notifications []notification) []timedNotification {
	out := make([]timedNotification, 0, len(notifications))
	for _, n := range notifications {
		t, err := time.Parse(time.RFC3339Nano, n.IndexedAt)
		if err != nil {
			l.logger().Warn("skipping bluesky notification with invalid indexedAt",
				"uri", n.URI, "indexed_at", n.IndexedAt)
			continue
		}
		out = append(out, timedNotification{notification: n, time: t})
	}
	return out
}

// listNotifications reads one page of notifications, newest first,
// starting after cursor ("" for the newest). The reasons parameter lets
// the server skip likes and reposts. deliverNew filters by reason as
// well, for servers that ignore the parameter.
func (l *Listener) listNotifications(ctx context.Context, cursor string) (listNotificationsOutput, error) {
	params := url.Values{}
	params.Set("limit", strconv.Itoa(l.pageLimit))
	if cursor != "" {
		params.Set("cursor", cursor)
	}
	for _, reason := range l.reasons {
		params.Add("reasons", reason)
	}

	// Only the request's error gets the prefix, so that a failed login
	// reads as one.
	var page listNotificationsOutput
	err := l.withSession(ctx, func(client *atclient.APIClient) error {
		page = listNotificationsOutput{}
		err := l.call(ctx, client, http.MethodGet, methodListNotifications, params, nil, &page)
		if err != nil {
			return fmt.Errorf("list notifications: %w", err)
		}
		return nil
	})
	return page, err
}

// event converts a notification. Fields holds cid, reason_subject and,
// when the record is a reply post, root_uri, root_cid, parent_uri and
// parent_cid, which Reply uses to keep the thread.
func (l *Listener) event(n timedNotification) listeners.Event {
	ev := listeners.Event{
		Listener: l.name,
		Kind:     config.KindBluesky,
		Type:     n.Reason,
		ID:       n.URI,
		Time:     n.time,
		User:     n.Author.Handle,
		UserID:   n.Author.DID,
		URI:      n.URI,
		Fields:   map[string]string{"cid": n.CID},
	}
	if n.ReasonSubject != "" {
		ev.Fields["reason_subject"] = n.ReasonSubject
	}

	var post postRecord
	if err := json.Unmarshal(n.Record, &post); err != nil || post.Type != collectionPost {
		return ev
	}
	ev.Text = post.Text
	if post.Reply != nil {
		ev.Fields["root_uri"] = post.Reply.Root.URI
		ev.Fields["root_cid"] = post.Reply.Root.CID
		ev.Fields["parent_uri"] = post.Reply.Parent.URI
		ev.Fields["parent_cid"] = post.Reply.Parent.CID
	}
	return ev
}
