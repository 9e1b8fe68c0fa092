package process

import (
	"os"
	"strings"
	"testing"
)

// readAll writes data into a pipe and returns the lines that child.read
// emits for it.
func readAll(t *testing.T, data string) []string {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	c := &child{}
	c.readers.Add(1)
	go c.read(pr, "stdout", func(line Line) { got = append(got, line.Text) })
	go func() {
		pw.WriteString(data)
		pw.Close()
	}()
	c.readers.Wait()
	pr.Close()
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readAll(t, tt.data)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d lines, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("line %d: %d bytes %.10q, want %d bytes %.10q", i, len(got[i]), got[i], len(tt.want[i]), tt.want[i])
				}
			}
		})
	}
}
