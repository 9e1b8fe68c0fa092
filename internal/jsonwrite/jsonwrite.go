// Package jsonwrite appends JSON values with the bytes json.Marshal
// writes for them, without its reflection. The store's records and the
// listeners' event logs are written on hot paths, and their readers,
// hooks and jobs among them, get the same JSON either way.
package jsonwrite

import (
	"time"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// String appends s as a JSON string with json.Marshal's escapes: quote,
// backslash and control characters, "<", ">" and "&" as \u003c and so
// on, U+2028 and U+2029, and \ufffd for each byte that is not valid
// UTF-8.
func String(buf []byte, s string) []byte {
	buf = append(buf, '"')
	// copied is the end of the part of s already in buf.
	copied := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			if plainASCII(c) {
				continue
			}
			buf = append(buf, s[copied:i-1]...)
			buf = appendEscape(buf, c)
			copied = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, s[copied:i]...)
			buf = append(buf, `\ufffd`...)
			copied = i + size
		case r == '\u2028' || r == '\u2029':
			buf = append(buf, s[copied:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			copied = i + size
		}
		i += size
	}
	buf = append(buf, s[copied:]...)
	return append(buf, '"')
}

// plainASCII reports whether json.Marshal writes the ASCII byte c as it
// is.
func plainASCII(c byte) bool {
	return c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
}

// appendEscape appends the escape of an ASCII byte that is not plain.
func appendEscape(buf []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(buf, '\\', c)
	case '\b':
		return append(buf, '\\', 'b')
	case '\f':
		return append(buf, '\\', 'f')
	case '\n':
		return append(buf, '\\', 'n')
	case '\r':
		return append(buf, '\\', 'r')
	case '\t':
		return append(buf, '\\', 't')
	}
	return append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}

// Time appends t as time.Time's MarshalJSON writes it, and returns
// MarshalJSON's error for a time it rejects. A UTC time in the years 0 to
// 9999 is formatted directly, and any other goes through MarshalJSON.
func Time(buf []byte, t time.Time) ([]byte, error) {
	if year := t.Year(); t.Location() != time.UTC || year < 0 || year > 9999 {
		text, err := t.MarshalJSON()
		if err != nil {
			return nil, err
		}
		return append(buf, text...), nil
	}
	buf = append(buf, '"')
	buf = t.AppendFormat(buf, time.RFC3339Nano)
	return append(buf, '"'), nil
}
