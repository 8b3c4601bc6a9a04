package gws

import "testing"

func TestKey(t *testing.T) {
	s := &Source{app: "login"}
	for raw, want := range map[string]string{
		`{"id":{"time":"2024-03-04T08:15:30.123Z","uniqueQualifier":"-4567890123456789","applicationName":"login","customerId":"C01"}}`: "login|2024-03-04T08:15:30.123Z|-4567890123456789",
		`{"id":{"time":"2024-03-04T08:15:31.123Z","uniqueQualifier":"-4567890123456789"}}`:                                              "login|2024-03-04T08:15:31.123Z|-4567890123456789",
		`{"id":{"time":"2024-03-04T08:15:31.123Z"}}`:                                                                                    "",
	} {
		k, err := s.Key([]byte(raw))
		if k != want || (want == "") != (err != nil) {
			t.Errorf("Key(%s) = %q, %v; want %q", raw, k, err, want)
		}
	}
}

func TestPolicy(t *testing.T) {
	if Policy("drive").Settle <= Policy("login").Settle {
		t.Error("drive, whose logs arrive hours late, settles no longer than login")
	}
}
