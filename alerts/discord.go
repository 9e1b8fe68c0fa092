package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

const (
	// discordUsername overrides the webhook's configured name, so every
	// alert shows where it came from.
	discordUsername = "agent-runner"
	// maxResponseBytes bounds how much of a response body is read.
	maxResponseBytes = 64 << 10
	// maxErrorMessageRunes caps the part of a response quoted in an error.
	maxErrorMessageRunes = 200
)

// discordWebhook posts alerts to a Discord webhook.
type discordWebhook struct {
	name string
	// url contains the webhook token. It stays a Secret, so printing the
	// sink shows only where the URL came from.
	url           config.Secret
	client        *http.Client
	timeout       time.Duration
	includeOutput bool
}

// discordPayload is the body of an execute-webhook request.
type discordPayload struct {
	Content  string `json:"content"`
	Username string `json:"username"`
	// AllowedMentions is always empty, so that nothing in an alert, such
	// as @everyone in job output, can ping anyone.
	AllowedMentions allowedMentions `json:"allowed_mentions"`
}

type allowedMentions struct {
	// Parse must encode as [] rather than null, because an empty parse
	// list is how Discord's allowed mentions object turns off every
	// mention type, @everyone included.
	Parse []string `json:"parse"`
}

// NewDiscordWebhook returns a sink that posts alerts to the webhook at
// cfg.URL. A nil client means a new http.Client. cfg.Timeout bounds each
// request.
func NewDiscordWebhook(cfg SinkConfig, client *http.Client) (Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Kind != SinkDiscordWebhook {
		return nil, fmt.Errorf("invalid alert sink %q: kind %q is not %q", cfg.Name, cfg.Kind, SinkDiscordWebhook)
	}
	parsed, err := url.Parse(cfg.URL.Reveal())
	// The parse error quotes the URL, so only its absence is used.
	if err != nil || (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" {
		return nil, fmt.Errorf("invalid alert sink %q: url from %s is not an absolute http or https URL", cfg.Name, cfg.URL.Source)
	}
	if client == nil {
		client = &http.Client{}
	}
	// A copy, so that the caller's client keeps its redirect policy.
	keepPost := *client
	keepPost.CheckRedirect = stopRedirectToGet
	client = &keepPost
	cfg = cfg.withDefaults()
	return &discordWebhook{
		name:          cfg.Name,
		url:           *cfg.URL,
		client:        client,
		timeout:       cfg.Timeout,
		includeOutput: cfg.IncludeOutput,
	}, nil
}

func (s *discordWebhook) Name() string { return s.name }

// stopRedirectToGet stops at a redirect that would repeat the POST as a
// GET, which net/http does for 301, 302 and 303. A webhook URL with
// http where the host redirects to https gets such a redirect. Discord
// returns 200 and the webhook object for a GET of the URL (its "Get
// Webhook with Token" endpoint), which would count as a delivery
// although nothing was posted. 307 and 308 keep the method and body and
// are followed, up to 10 as net/http does by default.
func stopRedirectToGet(req *http.Request, via []*http.Request) error {
	if req.Method != http.MethodPost {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// Send posts a once.
func (s *discordWebhook) Send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(discordPayload{
		Content:         discordContent(a, s.includeOutput),
		Username:        discordUsername,
		AllowedMentions: allowedMentions{Parse: []string{}},
	})
	if err != nil {
		return &PermanentError{Err: fmt.Errorf("encode alert for sink %q: %w", s.name, err)}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url.Reveal(), bytes.NewReader(body))
	if err != nil {
		return &PermanentError{Err: fmt.Errorf("build request for alert sink %q: %w", s.name, s.redact(err))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", discordUsername)

	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("send alert to sink %q: %w", s.name, s.redact(err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	return s.checkResponse(resp, data)
}

// checkResponse classifies a response. A 2xx is delivered, a 3xx that
// the client did not follow and any 4xx but 429 are permanent, a 429
// requests a pause, and the rest is retried.
func (s *discordWebhook) checkResponse(resp *http.Response, body []byte) error {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code >= 300 && code < 400:
		// The Location header is left out because it may hold the token.
		return &PermanentError{Err: fmt.Errorf("send alert to sink %q: %s: the webhook URL redirects, which would turn the POST into a GET: set url to the address it redirects to, such as with https", s.name, resp.Status)}
	case code == http.StatusTooManyRequests:
		err := fmt.Errorf("send alert to sink %q: rate limited: %s%s", s.name, resp.Status, s.quote(body))
		if wait, ok := retryAfter(resp.Header, body); ok {
			return &RetryAfterError{Wait: wait, Err: err}
		}
		return err
	case code >= 400 && code < 500:
		return &PermanentError{Err: fmt.Errorf("send alert to sink %q: %s%s", s.name, resp.Status, s.quote(body))}
	}
	return fmt.Errorf("send alert to sink %q: %s%s", s.name, resp.Status, s.quote(body))
}

// retryAfter reads the wait that a 429 requests: retry_after in the JSON
// body, in seconds with a fraction as Discord sends it, or else the
// Retry-After header in seconds or as an HTTP date.
func retryAfter(header http.Header, body []byte) (time.Duration, bool) {
	var limited struct {
		RetryAfter *float64 `json:"retry_after"`
	}
	if json.Unmarshal(body, &limited) == nil && limited.RetryAfter != nil && *limited.RetryAfter >= 0 {
		return secondsDuration(*limited.RetryAfter), true
	}
	value := strings.TrimSpace(header.Get("Retry-After"))
	if seconds, err := strconv.ParseFloat(value, 64); err == nil && seconds >= 0 {
		return secondsDuration(seconds), true
	}
	if at, err := http.ParseTime(value); err == nil {
		return max(time.Until(at), 0), true
	}
	return 0, false
}

// secondsDuration converts a wait of seconds >= 0 to a Duration, and a
// wait past its range, such as 1e300 or +Inf, to the longest Duration.
// Go leaves the conversion of such a float to an integer to the
// implementation, and on amd64 it yields a negative Duration, which the
// retry would take as no wait at all.
func secondsDuration(seconds float64) time.Duration {
	nanoseconds := seconds * float64(time.Second)
	if nanoseconds >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(nanoseconds)
}

// quote returns ": " and the message of an error response, Discord's
// "message" field or else the start of the body, scrubbed of the URL.
func (s *discordWebhook) quote(body []byte) string {
	var problem struct {
		Message string `json:"message"`
	}
	text := string(body)
	if json.Unmarshal(body, &problem) == nil && problem.Message != "" {
		text = problem.Message
	}
	text = strings.Join(strings.Fields(text), " ")
	if text == "" {
		return ""
	}
	return ": " + truncateRunes(s.redactText(text), maxErrorMessageRunes)
}

// redact removes the webhook URL from err. net/http quotes the URL in its
// errors, so the *url.Error wrapper is dropped first and any rest is
// scrubbed.
func (s *discordWebhook) redact(err error) error {
	var urlErr *url.Error
	for errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	text := err.Error()
	if scrubbed := s.redactText(text); scrubbed != text {
		return errors.New(scrubbed)
	}
	return err
}

// redactText replaces the forms of the webhook URL that may appear in a
// message: the URL itself and its path, which holds the token.
func (s *discordWebhook) redactText(text string) string {
	raw := s.url.Reveal()
	forms := []string{raw}
	if parsed, err := url.Parse(raw); err == nil {
		forms = append(forms, parsed.EscapedPath(), parsed.Path)
	}
	for _, form := range forms {
		if len(form) > 1 {
			text = strings.ReplaceAll(text, form, "[redacted]")
		}
	}
	return text
}
