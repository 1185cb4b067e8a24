package client

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestSlotsFormat: the slot file read and written by hand is the JSON
// encoding/json reads and writes: formatSlots gives json.Marshal's bytes,
// parseSlots json.Unmarshal's map for every form, and nil for damage.
func TestSlotsFormat(t *testing.T) {
	for _, m := range []map[string]slotEntry{
		{},
		{SlotID(testKey, "", 22): {Counter: 123456789, Next: 3}},
		{"b": {Counter: 0, Next: 0}, "a": {Counter: 1<<64 - 1, Next: 255}, "c-_9Z": {Counter: 7, Next: 1}},
		{"a\"b": {Counter: 1, Next: 1}, "é": {Counter: 2, Next: 2}}, // not plain: encoding/json
	} {
		want, _ := json.Marshal(m)
		got, err := formatSlots(m)
		if err != nil || string(got) != string(want) {
			t.Errorf("formatSlots(%v) = %s %v, want %s", m, got, err, want)
		}
		if back := parseSlots(got); !reflect.DeepEqual(back, m) {
			t.Errorf("parseSlots(%s) = %v, want %v", got, back, m)
		}
	}
	for _, in := range []string{
		`{ "a" : {"next": 2, "counter": 9} }`, // another form: encoding/json
		`{"a":{"counter":9,"next":2},"b":{"counter":1,"next":0}}`,
		"{\n\"a\":{\"counter\":9,\"next\":2}}\n",
	} {
		var want map[string]slotEntry
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if got := parseSlots([]byte(in)); !reflect.DeepEqual(got, want) {
			t.Errorf("parseSlots(%q) = %v, want %v", in, got, want)
		}
	}
	for _, in := range []string{
		"", "{", "{not json", "null", `[]`, `{"a":{"counter":9,"next":2}`,
		`{"a":{"counter":9,"next":2}}}`, `{"a":{"counter":-1,"next":2}}`,
		`{"a":{"counter":9,"next":2}}{"b":{"counter":1,"next":0}}`,
		`{"a":{"counter":99999999999999999999,"next":2}}`,
	} {
		if got := parseSlots([]byte(in)); got != nil {
			t.Errorf("damaged %q read as %v", in, got)
		}
	}
}
