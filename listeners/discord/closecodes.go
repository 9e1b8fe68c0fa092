package discord

import (
	"errors"
	"fmt"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"

	"github.com/agent-runner/agent-runner/listeners"
)

// fatalCloseCodes are the gateway close codes marked as not to reconnect
// after in the Gateway Close Event Codes table of Discord's "Opcodes and
// Status Codes" documentation, each with what to do.
var fatalCloseCodes = map[int]string{
	4004: "authentication failed, check the bot token",
	4010: "invalid shard",
	4011: "sharding required, which this listener does not support",
	4012: "invalid API version",
	4013: "invalid intents",
	4014: "disallowed intents, enable the Message Content intent for the bot in the Discord Developer Portal",
}

// fatalCloseError is a fatal gateway close code. It wraps
// listeners.ErrAuth so that the supervisor shows the listener as failed
// instead of restarting it at once, and it wraps the websocket error.
type fatalCloseError struct {
	close *websocket.CloseError
}

func (e *fatalCloseError) Error() string {
	return fmt.Sprintf("gateway closed the connection with code %d %q: %s",
		e.close.Code, e.close.Text, fatalCloseCodes[e.close.Code])
}

func (e *fatalCloseError) Unwrap() []error {
	return []error{listeners.ErrAuth, e.close}
}

// classifyOpenError marks the fatal close codes that discordgo's Open
// returns as a *websocket.CloseError when the gateway rejects IDENTIFY or
// RESUME.
func classifyOpenError(err error) error {
	var closeErr *websocket.CloseError
	if errors.As(err, &closeErr) {
		if _, fatal := fatalCloseCodes[closeErr.Code]; fatal {
			return &fatalCloseError{close: closeErr}
		}
	}
	return err
}

// isUnauthorized reports whether err is a REST response with status 401.
func isUnauthorized(err error) bool {
	var restErr *discordgo.RESTError
	return errors.As(err, &restErr) && restErr.Response != nil &&
		restErr.Response.StatusCode == 401
}
