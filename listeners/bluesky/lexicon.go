package bluesky

import "encoding/json"

// The types below mirror the JSON of the lexicon types in indigo's
// api/bsky and api/atproto packages. Those packages are not imported
// because they pull in CBOR and CID modules that this module does not
// otherwise need.

// XRPC methods and record types this listener uses.
const (
	methodCreateSession     = "com.atproto.server.createSession"
	methodListNotifications = "app.bsky.notification.listNotifications"
	methodCreateRecord      = "com.atproto.repo.createRecord"
	methodResolveHandle     = "com.atproto.identity.resolveHandle"

	collectionPost = "app.bsky.feed.post"
	facetLink      = "app.bsky.richtext.facet#link"
	facetMention   = "app.bsky.richtext.facet#mention"
)

// createSessionInput is the body of com.atproto.server.createSession.
type createSessionInput struct {
	Identifier string `json:"identifier"`
	Password   string `json:"password"`
}

// createSessionOutput is the response of com.atproto.server.createSession.
type createSessionOutput struct {
	AccessJwt  string       `json:"accessJwt"`
	RefreshJwt string       `json:"refreshJwt"`
	DID        string       `json:"did"`
	Handle     string       `json:"handle"`
	DIDDoc     *didDocument `json:"didDoc,omitempty"`
	Active     *bool        `json:"active,omitempty"`
	Status     string       `json:"status,omitempty"`
}

// didDocument is the part of a DID document that names the account's PDS.
type didDocument struct {
	Service []didService `json:"service"`
}

// didService is one service entry. ServiceEndpoint is raw because the DID
// specification allows a string, a map or a list there.
type didService struct {
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	ServiceEndpoint json.RawMessage `json:"serviceEndpoint"`
}

// listNotificationsOutput is the response of
// app.bsky.notification.listNotifications.
type listNotificationsOutput struct {
	Cursor        string         `json:"cursor,omitempty"`
	Notifications []notification `json:"notifications"`
}

// notification is one app.bsky.notification.listNotifications#notification.
type notification struct {
	URI           string          `json:"uri"`
	CID           string          `json:"cid"`
	Author        profileView     `json:"author"`
	Reason        string          `json:"reason"`
	ReasonSubject string          `json:"reasonSubject,omitempty"`
	Record        json.RawMessage `json:"record"`
	IndexedAt     string          `json:"indexedAt"`
}

// profileView is the part of app.bsky.actor.defs#profileView an event
// needs.
type profileView struct {
	DID    string `json:"did"`
	Handle string `json:"handle"`
}

// postRecord is an app.bsky.feed.post record.
type postRecord struct {
	Type      string    `json:"$type"`
	Text      string    `json:"text"`
	CreatedAt string    `json:"createdAt"`
	Facets    []facet   `json:"facets,omitempty"`
	Reply     *replyRef `json:"reply,omitempty"`
}

// replyRef is app.bsky.feed.post#replyRef: the thread's first post and
// the post being replied to.
type replyRef struct {
	Root   strongRef `json:"root"`
	Parent strongRef `json:"parent"`
}

// strongRef is com.atproto.repo.strongRef.
type strongRef struct {
	URI string `json:"uri"`
	CID string `json:"cid"`
}

// facet is app.bsky.richtext.facet.
type facet struct {
	Index    byteSlice      `json:"index"`
	Features []facetFeature `json:"features"`
}

// byteSlice is app.bsky.richtext.facet#byteSlice: a range of UTF-8 bytes
// of the post text, start inclusive and end exclusive.
type byteSlice struct {
	ByteStart int `json:"byteStart"`
	ByteEnd   int `json:"byteEnd"`
}

// facetFeature is a facet#link (URI set) or a facet#mention (DID set).
type facetFeature struct {
	Type string `json:"$type"`
	URI  string `json:"uri,omitempty"`
	DID  string `json:"did,omitempty"`
}

// createRecordInput is the body of com.atproto.repo.createRecord.
type createRecordInput struct {
	Repo       string     `json:"repo"`
	Collection string     `json:"collection"`
	Record     postRecord `json:"record"`
}

// createRecordOutput is the response of com.atproto.repo.createRecord.
type createRecordOutput struct {
	URI string `json:"uri"`
	CID string `json:"cid"`
}

// resolveHandleOutput is the response of
// com.atproto.identity.resolveHandle.
type resolveHandleOutput struct {
	DID string `json:"did"`
}
