package gws

import (
	"testing"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
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
		if Detect(v) {
			_ = Decode(v, func(x *event.Event, i int) { Flatten(b, v, i); b.Finish(x) })
		}
		b.Finish(&e)
	})
}
