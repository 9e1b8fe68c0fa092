package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/agent-runner/agent-runner/bench"
	chatserver "github.com/agent-runner/agent-runner/reliability/harness"
)

// connectTimeout bounds the wait for the idle figure's listeners to
// connect to their peers.
const connectTimeout = 30 * time.Second

// idlePeers are the fake Twitch, Discord and Bluesky servers of the idle
// figure, on 127.0.0.1.
type idlePeers struct {
	irc     *chatserver.IRCServer
	discord *chatserver.DiscordServer
	pds     *chatserver.PDSServer
}

func startIdlePeers() (*idlePeers, error) {
	p := &idlePeers{}
	var err error
	if p.irc, err = chatserver.StartIRCServer(); err != nil {
		return nil, fmt.Errorf("start chat server: %w", err)
	}
	if p.discord, err = chatserver.StartDiscordServer(); err != nil {
		p.close()
		return nil, fmt.Errorf("start Discord server: %w", err)
	}
	if p.pds, err = chatserver.StartPDSServer(); err != nil {
		p.close()
		return nil, fmt.Errorf("start PDS: %w", err)
	}
	return p, nil
}

func (p *idlePeers) config() bench.IdlePeers {
	return bench.IdlePeers{
		IRCAddr:    p.irc.Addr(),
		DiscordAPI: p.discord.APIURL(), DiscordGateway: p.discord.GatewayURL(), DiscordToken: chatserver.DiscordToken,
		PDSURL: p.pds.URL(), PDSPassword: chatserver.PDSPassword,
	}
}

// waitConnected waits until the Twitch listener joined, the Discord one
// received READY and the Bluesky one listed its notifications once.
func (p *idlePeers) waitConnected() error {
	deadline := time.Now().Add(connectTimeout)
	for time.Now().Before(deadline) {
		if p.irc.Joined() && p.discord.Ready.Load() > 0 && p.pds.Polls.Load() > 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("listeners not connected after %s: twitch joined %t, discord READY %d, bluesky polls %d",
		connectTimeout, p.irc.Joined(), p.discord.Ready.Load(), p.pds.Polls.Load())
}

func (p *idlePeers) close() {
	if p.irc != nil {
		p.irc.Close()
	}
	if p.discord != nil {
		p.discord.Close()
	}
	if p.pds != nil {
		p.pds.Close()
	}
}

// errPeerLost reports a listener that reconnected during the window,
// which would make the figure a reconnect loop's cost.
var errPeerLost = errors.New("a listener connected again during the window")

// connections counts the connections, logins and gateway sessions the
// peers saw.
func (p *idlePeers) connections() int64 {
	return p.discord.Ready.Load() + p.pds.Logins.Load() + int64(p.irc.Connections())
}
