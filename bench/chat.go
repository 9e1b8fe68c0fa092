package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	irc "github.com/gempir/go-twitch-irc/v4"
)

// ChatChannel is the channel the chat figure's listener joins.
const ChatChannel = "bench"

// WriteChatConfig writes dir/config.toml with one anonymous Twitch
// listener that reads ChatChannel from the server at ircAddr, in plain
// TCP, and appends every event to dir/events.jsonl. The daemon serves its
// metrics on httpAddr. The log rotates at 1 GiB, above what the figure
// writes, so every event stays in one file.
func WriteChatConfig(dir, ircAddr, httpAddr string) (string, error) {
	return writeConfig(dir, fmt.Sprintf(`[runner]
state_dir = "state"
http = %q

[listeners.chat]
kind = "twitch"
server = %q
tls = false
channels = [%q]
log_to = "events.jsonl"
log_max_bytes = 1073741824
`, httpAddr, ircAddr, ChatChannel))
}

// ListenerEvents reads the handled and dropped event counts of listener
// from the daemon's Prometheus metrics at baseURL.
func ListenerEvents(client *http.Client, baseURL, listener string) (handled, dropped int64, err error) {
	resp, err := client.Get(baseURL + "/metrics")
	if err != nil {
		return 0, 0, fmt.Errorf("read metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("read metrics: status %s", resp.Status)
	}
	label := `{listener="` + listener + `"} `
	found := 0
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), label)
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read metrics: invalid value in %q", scanner.Text())
		}
		switch name {
		case "agent_runner_listener_events_total":
			handled, found = int64(n), found+1
		case "agent_runner_listener_events_dropped_total":
			dropped, found = int64(n), found+1
		}
	}
	if err := scanner.Err(); err != nil {
		return 0, 0, fmt.Errorf("read metrics: %w", err)
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("read metrics: no event counts for listener %s", listener)
	}
	return handled, dropped, nil
}

// CountChatLines is the chat figure's baseline: a bare go-twitch-irc
// client that joins ChatChannel on the server at addr in plain TCP and
// counts PRIVMSG lines, with no routing and no log. It returns when count
// lines have arrived, with the time the last one did.
func CountChatLines(ctx context.Context, addr string, count int64) (time.Time, error) {
	client := irc.NewAnonymousClient()
	client.IrcAddress = addr
	client.TLS = false
	client.Join(ChatChannel)
	var seen atomic.Int64
	done := make(chan time.Time, 1)
	client.OnPrivateMessage(func(irc.PrivateMessage) {
		if seen.Add(1) == count {
			done <- time.Now()
		}
	})
	failed := make(chan error, 1)
	go func() { failed <- client.Connect() }()

	select {
	case last := <-done:
		_ = client.Disconnect()
		return last, nil
	case err := <-failed:
		return time.Time{}, fmt.Errorf("count chat lines: connection ended after %d of %d lines: %w", seen.Load(), count, err)
	case <-ctx.Done():
		_ = client.Disconnect()
		return time.Time{}, fmt.Errorf("count chat lines: %d of %d lines: %w", seen.Load(), count, ctx.Err())
	}
}

// CountJSONLines counts the newline-terminated lines of r.
func CountJSONLines(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var lines int64
	for {
		n, err := r.Read(buf)
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
}
