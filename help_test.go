package main

import (
	"strings"
	"testing"
)

func TestOverviewNoTrailingSpaces(t *testing.T) {
	for i, line := range strings.Split(overview(), "\n") {
		if strings.TrimRight(line, " \t") != line {
			t.Errorf("overview line %d ends in white space: %q", i+1, line)
		}
	}
}
