package bluesky

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/listeners"
	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// sessionKey is the state key of the stored session.
const sessionKey = "session"

// storedSession is the session kept in the listener's state. It contains
// the tokens, so it must never reach a log.
type storedSession struct {
	// Handle is the configured handle that logged in, so a changed
	// handle in the config leads to a new login.
	Handle     string `json:"handle"`
	DID        string `json:"did"`
	PDS        string `json:"pds"`
	AccessJwt  string `json:"access_jwt"`
	RefreshJwt string `json:"refresh_jwt"`
}

// errNotStarted is returned by Send and Reply before Run attached the
// state that holds the session.
var errNotStarted = errors.New("no bluesky session: the listener has not started")

// withSession runs fn with the session client. When the server rejects
// the session, it refreshes the tokens unless PasswordAuth already tried.
// When that fails too, it drops the session, logs in again, which login
// paces, and runs fn once more.
func (l *Listener) withSession(ctx context.Context, fn func(*atclient.APIClient) error) error {
	client, err := l.session(ctx)
	if err != nil {
		return err
	}

	// The refresh token from before the request. When another request
	// refreshes the session meanwhile, PasswordAuth.Refresh finds that the
	// token changed and keeps the new tokens instead of refreshing again.
	prior := refreshToken(client)
	err = fn(client)
	if !isSessionRejected(err) {
		return err
	}
	l.logger().Warn("bluesky session rejected",
		"handle", l.handle, "did", clientDID(client), "error", err)

	if needsRefresh(err) && l.refresh(ctx, client, prior) == nil {
		err = fn(client)
		if !isSessionRejected(err) {
			return err
		}
	}

	if err := l.dropSession(ctx, client); err != nil {
		return err
	}
	client, err = l.session(ctx)
	if err != nil {
		return err
	}
	return fn(client)
}

// refreshToken returns the refresh token of client's password session,
// or "" for a client without one.
func refreshToken(client *atclient.APIClient) string {
	auth, ok := client.Auth.(*atclient.PasswordAuth)
	if !ok {
		return ""
	}
	_, token := auth.GetTokens()
	return token
}

// refresh requests new tokens for client's session, unless its refresh
// token is no longer prior because a refresh already happened.
// PasswordAuth stores new tokens through storeRefreshed.
func (l *Listener) refresh(ctx context.Context, client *atclient.APIClient, prior string) error {
	auth, ok := client.Auth.(*atclient.PasswordAuth)
	if !ok {
		return errors.New("refresh bluesky session: the client has no password session")
	}
	if err := auth.Refresh(ctx, l.http, prior); err != nil {
		l.logger().Warn("refresh bluesky session failed", "did", clientDID(client), "error", err)
		return fmt.Errorf("refresh bluesky session: %w", err)
	}
	return nil
}

// session returns the session client. It resumes the stored session, or
// logs in and stores the new one.
func (l *Listener) session(ctx context.Context) (*atclient.APIClient, error) {
	if err := l.lockSession(ctx); err != nil {
		return nil, err
	}
	defer l.unlockSession()

	if l.client != nil {
		return l.client, nil
	}
	kv := l.stateKV()
	if kv == nil {
		return nil, errNotStarted
	}

	stored, found, err := l.loadSession(kv)
	if err != nil {
		return nil, err
	}
	if found && strings.EqualFold(stored.Handle, l.handle) {
		l.client = l.resume(stored)
		l.logger().Info("resumed stored bluesky session", "did", stored.DID, "pds", stored.PDS)
		return l.client, nil
	}

	stored, err = l.login(ctx)
	if err != nil {
		return nil, err
	}
	// The client is kept even when storing fails, so that the next Run
	// reuses it instead of logging in again.
	l.client = l.resume(stored)
	if err := saveSession(kv, stored); err != nil {
		return nil, err
	}
	return l.client, nil
}

// dropSession clears client's session in memory and in the state, so
// that the next call to session logs in.
func (l *Listener) dropSession(ctx context.Context, client *atclient.APIClient) error {
	if err := l.lockSession(ctx); err != nil {
		return err
	}
	defer l.unlockSession()

	if l.client != client {
		return nil
	}
	l.client = nil
	kv := l.stateKV()
	if kv == nil {
		return nil
	}
	if err := kv.Put(sessionKey, []byte("{}")); err != nil {
		return fmt.Errorf("clear bluesky session: %w", err)
	}
	return nil
}

func (l *Listener) lockSession(ctx context.Context) error {
	select {
	case l.sessionLock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Listener) unlockSession() { <-l.sessionLock }

// login calls createSession with the handle and app password. It sends
// at most one login per loginInterval that the server accepts or
// rejects, because Bluesky rate-limits createSession per account far
// more tightly than other calls (docs.bsky.app, "Rate Limits"). Before
// that interval has passed it returns an ErrAuth error that names the
// time of the next try. A network error, 429 or 5xx response does not
// count, since the server did not judge the login. The caller holds
// sessionLock.
func (l *Listener) login(ctx context.Context) (storedSession, error) {
	if err := l.checkLoginPacing(time.Now()); err != nil {
		return storedSession{}, err
	}

	l.logger().Info("logging in to bluesky", "handle", l.handle, "host", l.host)
	client := l.publicClient()
	input := createSessionInput{Identifier: l.handle, Password: l.password.Reveal()}
	var out createSessionOutput
	sent := time.Now()
	err := l.call(ctx, client, http.MethodPost, methodCreateSession, nil, input, &out)
	if err != nil {
		if !isClientError(err) {
			return storedSession{}, fmt.Errorf("log in as %s: %w", l.handle, err)
		}
		l.loginAt = sent
		l.loginErr = fmt.Errorf("log in as %s: %w: %v; check the handle and app password",
			l.handle, listeners.ErrAuth, err)
		return storedSession{}, l.loginErr
	}
	l.loginAt, l.loginErr = sent, nil

	return l.newStoredSession(out)
}

// checkLoginPacing returns an ErrAuth error when the last login was sent
// less than loginInterval before now. The caller holds sessionLock.
func (l *Listener) checkLoginPacing(now time.Time) error {
	if l.loginAt.IsZero() {
		return nil
	}
	next := l.loginAt.Add(l.loginInterval)
	if !now.Before(next) {
		return nil
	}
	at := next.Format(time.RFC3339)
	if l.loginErr != nil {
		return fmt.Errorf("%w; next login try at %s", l.loginErr, at)
	}
	return fmt.Errorf("log in as %s: %w: the server rejected the session from the login at %s, and only one login per %s is sent; next login try at %s",
		l.handle, listeners.ErrAuth, l.loginAt.Format(time.RFC3339), l.loginInterval, at)
}

// newStoredSession checks a createSession response and picks the PDS from
// its DID document, falling back to the login host.
func (l *Listener) newStoredSession(out createSessionOutput) (storedSession, error) {
	if _, err := syntax.ParseDID(out.DID); err != nil {
		return storedSession{}, fmt.Errorf("log in as %s: invalid DID in response: %w", l.handle, err)
	}
	if out.AccessJwt == "" || out.RefreshJwt == "" {
		return storedSession{}, fmt.Errorf("log in as %s: response is missing its tokens", l.handle)
	}
	if out.Active != nil && !*out.Active {
		l.logger().Warn("bluesky account is not active", "did", out.DID, "status", out.Status)
	}

	pds := pdsEndpoint(out.DIDDoc)
	if pds == "" {
		pds = l.host
	}
	l.logger().Info("logged in to bluesky", "handle", l.handle, "did", out.DID, "pds", pds)
	return storedSession{
		Handle:     l.handle,
		DID:        out.DID,
		PDS:        pds,
		AccessJwt:  out.AccessJwt,
		RefreshJwt: out.RefreshJwt,
	}, nil
}

// pdsEndpoint returns the #atproto_pds service URL of doc, or "" when it
// has none. Requests after login go there, because an entryway such as
// bsky.social only handles the login itself.
func pdsEndpoint(doc *didDocument) string {
	if doc == nil {
		return ""
	}
	for _, service := range doc.Service {
		if !strings.HasSuffix(service.ID, "#atproto_pds") {
			continue
		}
		var endpoint string
		if err := json.Unmarshal(service.ServiceEndpoint, &endpoint); err != nil {
			continue
		}
		if validateHost(endpoint) == nil {
			return strings.TrimSuffix(endpoint, "/")
		}
	}
	return ""
}

// resume builds a client for stored. PasswordAuth refreshes the access
// token when the server responds with 400 ExpiredToken, retries the request
// once, and calls storeRefreshed with the new tokens.
func (l *Listener) resume(stored storedSession) *atclient.APIClient {
	client := atclient.ResumePasswordSession(atclient.PasswordSessionData{
		AccessToken:  stored.AccessJwt,
		RefreshToken: stored.RefreshJwt,
		AccountDID:   syntax.DID(stored.DID),
		Host:         stored.PDS,
	}, l.storeRefreshed)
	client.Client = l.http
	client.Headers.Set("User-Agent", "agent-runner")
	return client
}

// storeRefreshed stores the tokens of a refreshed session. It runs while
// PasswordAuth holds its lock and cannot return an error, so it logs one.
func (l *Listener) storeRefreshed(_ context.Context, data atclient.PasswordSessionData) {
	kv := l.stateKV()
	if kv == nil {
		return
	}
	stored := storedSession{
		Handle:     l.handle,
		DID:        data.AccountDID.String(),
		PDS:        data.Host,
		AccessJwt:  data.AccessToken,
		RefreshJwt: data.RefreshToken,
	}
	if err := saveSession(kv, stored); err != nil {
		l.logger().Error("store refreshed bluesky session failed", "did", stored.DID, "error", err)
		return
	}
	l.logger().Info("refreshed bluesky session", "did", stored.DID)
}

// loadSession returns the stored session, and false when there is none,
// it was cleared, or it cannot be decoded. Only a failing state returns
// an error, so a damaged record leads to a new login, not a stuck
// listener.
func (l *Listener) loadSession(kv listeners.KV) (storedSession, bool, error) {
	data, found, err := kv.Get(sessionKey)
	if err != nil {
		return storedSession{}, false, fmt.Errorf("read bluesky session: %w", err)
	}
	if !found || len(data) == 0 {
		return storedSession{}, false, nil
	}
	var stored storedSession
	if err := json.Unmarshal(data, &stored); err != nil {
		l.logger().Warn("ignoring unreadable stored bluesky session", "error", err)
		return storedSession{}, false, nil
	}
	if stored.AccessJwt == "" || stored.RefreshJwt == "" || stored.PDS == "" {
		return storedSession{}, false, nil
	}
	return stored, true, nil
}

func saveSession(kv listeners.KV, stored storedSession) error {
	data, err := json.Marshal(stored)
	if err != nil {
		return fmt.Errorf("encode bluesky session: %w", err)
	}
	if err := kv.Put(sessionKey, data); err != nil {
		return fmt.Errorf("store bluesky session: %w", err)
	}
	return nil
}

// clientDID returns the account DID of client for logs.
func clientDID(client *atclient.APIClient) string {
	if client == nil || client.AccountDID == nil {
		return ""
	}
	return client.AccountDID.String()
}

// publicClient returns a client without a session for the configured
// host.
func (l *Listener) publicClient() *atclient.APIClient {
	client := atclient.NewAPIClient(l.host)
	client.Client = l.http
	client.Headers.Set("User-Agent", "agent-runner")
	return client
}
