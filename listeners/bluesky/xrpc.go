package bluesky

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 64 << 10

// maxResponseBody caps how much of any response the listener reads, so
// that a runaway body cannot exhaust memory within the client timeout.
// NOTE: the value is an estimate, not a documented server limit. A page
// holds at most 100 notifications, each with one record and an author
// view, so real pages are expected to stay far below it.
const maxResponseBody = 16 << 20

// errResponseTooLarge is the read error of a body longer than
// maxResponseBody.
var errResponseTooLarge = fmt.Errorf("response body is larger than the listener's limit of %d MiB", maxResponseBody>>20)

// limitTransport caps the body of every response at limit bytes. It sits
// below atclient, so the bodies that PasswordAuth reads itself are capped
// too.
type limitTransport struct {
	base  http.RoundTripper
	limit int64
}

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{body: resp.Body, left: t.limit}
	return resp, nil
}

// limitedBody reads body until left bytes are used up, and then returns
// errResponseTooLarge if the body has more.
type limitedBody struct {
	body io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var probe [1]byte
		n, err := b.body.Read(probe[:])
		if n > 0 {
			return 0, errResponseTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.body.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.body.Close() }

// call sends one XRPC request with client and decodes a 2xx JSON response
// into out, which may be nil. A 429 response whose reset time is near is
// waited out and sent again, while a later reset, or more 429 responses
// than fit in maxInlineRateWait, pauses all requests and returns an
// errRateLimited error: see waitRateLimit. Other non-2xx
// responses return an *atclient.APIError.
//
// It uses APIClient.Do rather than Get or Post because those drop the
// response headers, and with them the rate-limit reset time.
func (l *Listener) call(ctx context.Context, client *atclient.APIClient, method string, endpoint syntax.NSID, params url.Values, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		payload, err = json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s request: %w", endpoint, err)
		}
	}

	var waited time.Duration
	for {
		if err := l.checkRateLimitPause(); err != nil {
			return err
		}
		resp, err := client.Do(ctx, newRequest(method, endpoint, params, payload))
		if err != nil {
			if l.timedOut(ctx, err) {
				return fmt.Errorf("no response within %s: %w", l.http.Timeout, err)
			}
			// PasswordAuth returns a failed token refresh as an error,
			// without the response headers.
			if !isRateLimited(err) {
				return err
			}
			if err := l.waitRateLimit(ctx, endpoint, time.Now().Add(l.fallbackRateWait), &waited); err != nil {
				return err
			}
			continue
		}

		if resp.StatusCode == http.StatusTooManyRequests {
			until := rateLimitReset(resp.Header, time.Now(), l.fallbackRateWait)
			drainAndClose(resp)
			if err := l.waitRateLimit(ctx, endpoint, until, &waited); err != nil {
				return err
			}
			continue
		}

		return decodeResponse(resp, endpoint, out)
	}
}

// timedOut reports whether err is the client's request timeout rather
// than the end of ctx. The error of Do names the URL, with the host and
// the call.
func (l *Listener) timedOut(ctx context.Context, err error) bool {
	var netErr net.Error
	return ctx.Err() == nil && errors.As(err, &netErr) && netErr.Timeout()
}

// newRequest builds a request whose body can be read again, which
// PasswordAuth needs to retry it after a token refresh.
func newRequest(method string, endpoint syntax.NSID, params url.Values, payload []byte) *atclient.APIRequest {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}

	req := atclient.NewAPIRequest(method, endpoint, body)
	req.Headers.Set("Accept", "application/json")
	if payload != nil {
		req.Headers.Set("Content-Type", "application/json")
	}
	if params != nil {
		req.QueryParams = params
	}
	return req
}

// decodeResponse closes resp after decoding its JSON body into out, or
// after turning a non-2xx response into an *atclient.APIError.
func decodeResponse(resp *http.Response, endpoint syntax.NSID, out any) error {
	defer drainAndClose(resp)

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var body atclient.ErrorBody
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&body); err != nil {
			return &atclient.APIError{StatusCode: resp.StatusCode}
		}
		return body.APIError(resp.StatusCode)
	}

	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s response: %w", endpoint, err)
	}
	return nil
}

// drainAndClose reads what is left of a small body so that the
// connection can be reused.
func drainAndClose(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
}

// isSessionRejected reports whether err means the session's tokens are no
// longer accepted: a 401, or an expired or invalid token that the access
// token refresh in PasswordAuth could not replace.
func isSessionRejected(err error) bool {
	var apiErr *atclient.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	if apiErr.StatusCode == http.StatusUnauthorized {
		return true
	}
	return apiErr.StatusCode == http.StatusBadRequest &&
		(apiErr.Name == "ExpiredToken" || apiErr.Name == "InvalidToken")
}

// needsRefresh reports whether err rejects a session whose tokens
// PasswordAuth did not try to refresh, because it refreshes only after a
// 400 ExpiredToken and not after a 401 or InvalidToken.
func needsRefresh(err error) bool {
	var apiErr *atclient.APIError
	return errors.As(err, &apiErr) && apiErr.Name != "ExpiredToken"
}

// isClientError reports whether err is a 4xx API error other than 429:
// the server responded, and sending the same request again will not help.
func isClientError(err error) bool {
	var apiErr *atclient.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.StatusCode >= 400 && apiErr.StatusCode < 500 &&
		apiErr.StatusCode != http.StatusTooManyRequests
}
