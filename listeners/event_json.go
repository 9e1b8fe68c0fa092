package listeners

import (
	"slices"

	"github.com/agent-runner/agent-runner/internal/jsonwrite"
)

// appendEvent appends ev as the JSON that json.Marshal writes for it. The
// journal writes every event of a chat flood, and reflection cost more
// than the rest of the routing together.
func appendEvent(buf []byte, ev Event) ([]byte, error) {
	buf = append(buf, `{"listener":`...)
	buf = jsonwrite.String(buf, ev.Listener)
	buf = append(buf, `,"kind":`...)
	buf = jsonwrite.String(buf, ev.Kind)
	buf = append(buf, `,"type":`...)
	buf = jsonwrite.String(buf, ev.Type)
	buf = append(buf, `,"id":`...)
	buf = jsonwrite.String(buf, ev.ID)
	buf = append(buf, `,"time":`...)
	buf, err := jsonwrite.Time(buf, ev.Time)
	if err != nil {
		return nil, err
	}
	buf = appendOptional(buf, `,"channel":`, ev.Channel)
	buf = appendOptional(buf, `,"user":`, ev.User)
	buf = appendOptional(buf, `,"user_id":`, ev.UserID)
	buf = appendOptional(buf, `,"text":`, ev.Text)
	buf = appendOptional(buf, `,"uri":`, ev.URI)
	if len(ev.Fields) > 0 {
		buf = append(buf, `,"fields":`...)
		buf = appendFields(buf, ev.Fields)
	}
	return append(buf, '}'), nil
}

// appendOptional appends key and value unless value is empty, as the
// omitempty option does.
func appendOptional(buf []byte, key, value string) []byte {
	if value == "" {
		return buf
	}
	return jsonwrite.String(append(buf, key...), value)
}

// appendFields appends fields as a JSON object with its keys sorted, as
// json.Marshal orders a map.
func appendFields(buf []byte, fields map[string]string) []byte {
	var stack [16]string
	keys := stack[:0]
	for key := range fields {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	buf = append(buf, '{')
	for i, key := range keys {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = jsonwrite.String(buf, key)
		buf = append(buf, ':')
		buf = jsonwrite.String(buf, fields[key])
	}
	return append(buf, '}')
}
