package bluesky

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/agent-runner/agent-runner/listeners"
	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Send posts text as a new post. Bluesky has no channels, so target is
// ignored. It needs the session that Run set up, and fails before Run
// has started.
func (l *Listener) Send(ctx context.Context, _ string, text string) error {
	return l.post(ctx, text, nil)
}

// Reply posts text as a reply to the post of to, in the same thread: the
// root is the root of to's post when that post is itself a reply, and
// to's post otherwise.
func (l *Listener) Reply(ctx context.Context, to listeners.Event, text string) error {
	reply, err := replyTo(to)
	if err != nil {
		return err
	}
	return l.post(ctx, text, reply)
}

// replyTo builds the reply reference for a reply to the post of ev.
func replyTo(ev listeners.Event) (*replyRef, error) {
	uri := ev.URI
	if uri == "" {
		uri = ev.ID
	}
	cid := ev.Fields["cid"]
	if uri == "" || cid == "" {
		return nil, fmt.Errorf("reply to bluesky event %q: missing record URI or cid", ev.ID)
	}

	aturi, err := syntax.ParseATURI(uri)
	if err != nil {
		return nil, fmt.Errorf("reply to %s: %w", uri, err)
	}
	if collection := aturi.Collection().String(); collection != collectionPost {
		return nil, fmt.Errorf("reply to %s: the record is a %s, not a post; only mention, reply and quote events can get a reply", uri, collection)
	}

	parent := strongRef{URI: uri, CID: cid}
	root := parent
	if ev.Fields["root_uri"] != "" && ev.Fields["root_cid"] != "" {
		root = strongRef{URI: ev.Fields["root_uri"], CID: ev.Fields["root_cid"]}
	}
	return &replyRef{Root: root, Parent: parent}, nil
}

// post creates an app.bsky.feed.post record with facets for the links
// and mentions in text.
func (l *Listener) post(ctx context.Context, text string, reply *replyRef) error {
	if err := validatePostText(text); err != nil {
		return fmt.Errorf("create post: %w", err)
	}
	facets, err := l.buildFacets(ctx, text)
	if err != nil {
		return fmt.Errorf("create post: %w", err)
	}

	record := postRecord{
		Type:      collectionPost,
		Text:      text,
		CreatedAt: time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		Facets:    facets,
		Reply:     reply,
	}
	var out createRecordOutput
	err = l.withSession(ctx, func(client *atclient.APIClient) error {
		input := createRecordInput{Repo: clientDID(client), Collection: collectionPost, Record: record}
		err := l.call(ctx, client, http.MethodPost, methodCreateRecord, nil, input, &out)
		if err != nil {
			return fmt.Errorf("create post: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}

	l.logger().Info("posted to bluesky", "uri", out.URI, "reply", reply != nil)
	return nil
}

// buildFacets returns the link and mention facets of text. A mention
// whose handle does not resolve stays plain text, as in the Bluesky app,
// so one wrong handle does not stop the post.
func (l *Listener) buildFacets(ctx context.Context, text string) ([]facet, error) {
	var facets []facet
	for _, s := range findSpans(text) {
		feature := facetFeature{Type: facetLink, URI: s.link}
		if s.handle != "" {
			did, err := l.resolveHandle(ctx, s.handle)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				l.logger().Warn("posting mention as plain text", "handle", s.handle, "error", err)
				continue
			}
			feature = facetFeature{Type: facetMention, DID: did}
		}
		facets = append(facets, facet{
			Index:    byteSlice{ByteStart: s.start, ByteEnd: s.end},
			Features: []facetFeature{feature},
		})
	}
	return facets, nil
}

// resolveHandle returns the DID of handle from the configured host. It
// needs no session.
func (l *Listener) resolveHandle(ctx context.Context, handle string) (string, error) {
	client := l.publicClient()
	var out resolveHandleOutput
	params := url.Values{"handle": {handle}}
	if err := l.call(ctx, client, http.MethodGet, methodResolveHandle, params, nil, &out); err != nil {
		return "", fmt.Errorf("resolve handle %s: %w", handle, err)
	}
	if _, err := syntax.ParseDID(out.DID); err != nil {
		return "", fmt.Errorf("resolve handle %s: invalid DID in response: %w", handle, err)
	}
	return out.DID, nil
}
