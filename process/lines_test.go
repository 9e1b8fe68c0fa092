package process

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// readAll writes data into the stdout pipe of an output and returns the
// lines that it emits on its way to end of file.
func readAll(t *testing.T, data string) []string {
	t.Helper()
	var got []string
	out, err := newOutput(func(line Line) { got = append(got, line.Text) })
	if err != nil {
		t.Fatal(err)
	}
	// The writer gets its own copy of the write end, as a child does,
	// since drain closes the output's copy first.
	stdout, _ := out.writers()
	writer, err := unix.Dup(int(stdout.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer unix.Close(writer)
		for rest := []byte(data); len(rest) > 0; {
			n, err := unix.Write(writer, rest)
			if err != nil {
				return
			}
			rest = rest[n:]
		}
	}()
	out.drain(10 * time.Second)
	return got
}

func TestReadCutsLinesAtTheLimit(t *testing.T) {
	long := strings.Repeat("x", MaxLineBytes)
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"short lines", "a\r\nb\nc", []string{"a", "b", "c"}},
		{"newline is the last byte that fits", long[1:] + "\nend\n", []string{long[1:], "end"}},
		{"newline right after the limit", long + "\nend\n", []string{long, "", "end"}},
		{"two and a half pieces", long + long + "tail", []string{long, long, "tail"}},
		{"empty lines", "\n\n", []string{"", ""}},
		{"lines across many reads", strings.Repeat("0123456789abcdef\n", 4*readBufferBytes/17), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = strings.Split(strings.TrimSuffix(tt.data, "\n"), "\n")
			}
			got := readAll(t, tt.data)
			if len(got) != len(want) {
				t.Fatalf("got %d lines, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("line %d: %d bytes %.10q, want %d bytes %.10q", i, len(got[i]), got[i], len(want[i]), want[i])
				}
			}
		})
	}
}
