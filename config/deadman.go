package config

import "time"

// heartbeatKeys are the keys of a job's heartbeat table.
var heartbeatKeys = []string{"file", "json_field", "max_age"}

const heartbeatExample = `{ file = "var/digest.heartbeat", max_age = "10m" }`

// decodeDeadMan reads the keys that catch a job which runs but does no
// work: heartbeat and expect_file_updated. max_age is a shared key that
// decodeSettings reads.
func (l *loader) decodeDeadMan(t table, job *Job) {
	job.Heartbeat = l.decodeHeartbeat(t)
	if file, ok := l.nonEmptyString(t, "expect_file_updated", `"var/digest.json"`); ok {
		job.ExpectFileUpdated = l.resolve(file)
	}
}

// decodeHeartbeat returns the heartbeat table, or nil when there is none
// or it is invalid.
func (l *loader) decodeHeartbeat(t table) *Heartbeat {
	ht, ok := l.subTable(t, "heartbeat", heartbeatExample)
	if !ok {
		return nil
	}
	l.checkKeys(ht, "in a heartbeat", heartbeatKeys, nil)
	heartbeat := &Heartbeat{}
	valid := true
	if file, ok := l.nonEmptyString(ht, "file", `"var/digest.heartbeat"`); ok {
		heartbeat.File = l.resolve(file)
	} else if _, set := ht.values["file"]; !set {
		l.report(ht.path, `missing file: add file = "var/digest.heartbeat", the file the job touches or writes on each beat`)
		valid = false
	} else {
		valid = false
	}
	if age, ok := l.durationValue(ht, "max_age", time.Second); ok {
		heartbeat.MaxAge = age
	} else if _, set := ht.values["max_age"]; !set {
		l.report(ht.path, `missing max_age: add max_age = "10m", the age at which the heartbeat counts as stale`)
		valid = false
	} else {
		valid = false
	}
	if field, ok := l.nonEmptyString(ht, "json_field", `"time"`); ok {
		heartbeat.JSONField = field
	}
	if !valid {
		return nil
	}
	return heartbeat
}
