package m365

import (
	"testing"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// FuzzDecode checks the decoder never panics on any JSON value.
func FuzzDecode(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p fastjson.Parser
		v, err := p.ParseBytes(data)
		if err != nil {
			return
		}
		b := event.NewBuilder()
		var e event.Event
		if s := Detect(v); s != None {
			_ = Decode(v, s, &e, record.NewCache())
			Flatten(b, v, 0)
		}
		b.Finish(&e)
	})
}
