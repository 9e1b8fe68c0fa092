package control

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// clientModeEnv makes the test binary act as a control client on the
// socket it names instead of running tests, so that a test can run the
// client as another user.
const clientModeEnv = "CONTROL_TEST_CLIENT"

func TestMain(m *testing.M) {
	if socket := os.Getenv(clientModeEnv); socket != "" {
		os.Exit(runTestClient(socket, os.Getenv("CONTROL_TEST_CLIENT_DELAY")))
	}
	goleak.VerifyTestMain(m)
}

// runTestClient asks the daemon at socket for its status and prints the
// error it gets. With delay set, it waits that long between connecting
// and sending the request, so that the server has closed by then unless
// it waits for the request.
func runTestClient(socket, delay string) int {
	if delay == "" {
		_, err := GetStatus(socket)
		fmt.Println(err)
		return 0
	}
	wait, err := time.ParseDuration(delay)
	if err != nil {
		fmt.Println(err)
		return 2
	}
	conn, err := dialForReply(socket, replyTimeout)
	if err != nil {
		fmt.Println(err)
		return 0
	}
	defer conn.Close()
	time.Sleep(wait)
	if err := send(conn, Request{Op: OpStatus}); err != nil {
		fmt.Println(err)
		return 0
	}
	msg, err := receive(newScanner(conn))
	switch {
	case err != nil:
		fmt.Println(err)
	case msg.Error != nil:
		fmt.Println(msg.Error)
	default:
		fmt.Println("served")
	}
	return 0
}
