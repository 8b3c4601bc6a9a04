package simulate

import (
	"net/netip"
	"time"
)

// gwsApp is a third-party OAuth app users of the Workspace tenant approved.
type gwsApp struct {
	name, clientID string
	methods        []string
}

var gwsApps = []gwsApp{
	{name: "Inkwell Mail Assistant", clientID: "481736205114-k2q8v1l0d4hcsm3p7o9u6ti5rj2nwe8a.apps.googleusercontent.com", methods: []string{"gmail.users.messages.list", "gmail.users.messages.get", "gmail.users.history.list"}},
	{name: "Meetbridge Scheduler", clientID: "902114558731-3bq9f0e2u7xw1m6c4k8s5op2hlgdr1vt.apps.googleusercontent.com", methods: []string{"gmail.users.labels.list", "gmail.users.messages.list"}},
}

type gwsEvent struct {
	t    int64
	kind uint8
}

const (
	gwsLogin uint8 = iota
	gwsLoginFail
	gwsLogout
	gwsOpen
	gwsAuthorize
	gwsAPI
)

// gwsStream is one Workspace user's days: logins, Gmail opens and OAuth
// app activity.
type gwsStream struct {
	s    *sim
	u    *gwsUser
	idx  int
	g    rng
	day  int64
	ev   [48]gwsEvent
	n, i int
	app  *gwsApp
	auth bool
}

func newGWSStream(s *sim, u *gwsUser, idx int) *gwsStream {
	gs := &gwsStream{s: s, u: u, idx: idx, g: newRNG(s.t.seed, 0x677773, uint64(idx)), day: s.start - day}
	if gs.g.chance(0.4) {
		gs.app = &gwsApps[gs.g.intn(len(gwsApps))]
	}
	gs.plan()
	return gs
}

func (gs *gwsStream) next() int64 {
	if gs.i < gs.n {
		return gs.ev[gs.i].t
	}
	return never
}

func (gs *gwsStream) add(t int64, k uint8) {
	if gs.n < len(gs.ev) && t >= gs.day {
		gs.ev[gs.n] = gwsEvent{t: t, kind: k}
		gs.n++
	}
}

func (gs *gwsStream) plan() {
	s, u, g := gs.s, gs.u, gs.g
	for {
		gs.day += day
		gs.n, gs.i = 0, 0
		if gs.day >= s.end {
			return
		}
		wd := time.Unix(0, gs.day).UTC().Weekday()
		if wd == time.Saturday || wd == time.Sunday || !g.chance(0.93) {
			continue
		}
		mid := gs.day - u.tzOffset
		start := mid + u.workStart + int64(g.between(-20, 20))*minute
		if g.chance(0.04) {
			gs.add(start-int64(g.between(5, 60))*second, gwsLoginFail)
		}
		gs.add(start, gwsLogin)
		for i, n := 0, g.between(4, 18); i < n; i++ {
			gs.add(start+int64(g.intn(int(u.workLen/minute)))*minute+int64(g.intn(60))*second, gwsOpen)
		}
		if gs.app != nil {
			if !gs.auth {
				gs.auth = true
				gs.add(start+int64(g.between(10, 90))*minute, gwsAuthorize)
			}
			for i, n := 0, g.between(3, 10); i < n; i++ {
				gs.add(start+int64(g.intn(int(u.workLen/minute)))*minute, gwsAPI)
			}
		}
		if g.chance(0.5) {
			gs.add(start+u.workLen+int64(g.between(0, 40))*minute, gwsLogout)
		}
		for i := 1; i < gs.n; i++ {
			for j := i; j > 0 && gs.ev[j].t < gs.ev[j-1].t; j-- {
				gs.ev[j], gs.ev[j-1] = gs.ev[j-1], gs.ev[j]
			}
		}
		if gs.n > 0 {
			return
		}
	}
}

func (gs *gwsStream) step(s *sim) error {
	e := gs.ev[gs.i]
	gs.i++
	if gs.i >= gs.n {
		defer gs.plan()
	}
	u, g := gs.u, gs.g
	ip := u.home.host(u.homeKey)
	var app, typ, name string
	var ps []gwsParam
	switch e.kind {
	case gwsLogin, gwsLoginFail:
		app, typ, name = "login", "login", "login_success"
		ps = []gwsParam{{name: "login_type", value: "google_password"}, {name: "login_challenge_method", kind: 'm', multi: []string{"password", "google_prompt"}}, {name: "is_suspicious", kind: 'b'}}
		if e.kind == gwsLoginFail {
			name = "login_failure"
			ps = []gwsParam{{name: "login_type", value: "google_password"}, {name: "login_challenge_method", kind: 'm', multi: []string{"password"}}, {name: "login_failure_type", value: "login_failure_invalid_password"}, {name: "is_suspicious", kind: 'b'}}
		}
	case gwsLogout:
		app, typ, name = "login", "logout", "logout"
		ps = []gwsParam{{name: "login_type", value: "google_password"}}
	case gwsOpen:
		app, typ, name = "gmail", "delivery_type", "delivery"
		msg := gs.messageID(g.intn(1 << 20))
		ps = []gwsParam{
			{name: "event_info", kind: 'n', msg: []gwsParam{{name: "mail_event_type", kind: 'i', ival: 7}, {name: "success", kind: 'b', bval: true}, {name: "client_type", value: "WEB"}}},
			{name: "message_info", kind: 'n', msg: []gwsParam{{name: "rfc2822_message_id", value: msg}, {name: "subject", value: subjects[g.intn(len(subjects))]}, {name: "is_spam", kind: 'b'}}},
		}
	case gwsAuthorize:
		app, typ, name = "token", "auth", "authorize"
		ps = []gwsParam{{name: "client_id", value: gs.app.clientID}, {name: "app_name", value: gs.app.name}, {name: "client_type", value: "WEB"}, {name: "scope", kind: 'm', multi: []string{"https://www.googleapis.com/auth/gmail.readonly", "openid", "email"}}}
	case gwsAPI:
		app, typ, name = "token", "auth", "activity"
		ip = s.t.net["host-aws"].host(strKey(gs.app.clientID))
		ps = []gwsParam{{name: "api_name", value: "gmail"}, {name: "method_name", value: gs.app.methods[g.intn(len(gs.app.methods))]}, {name: "client_id", value: gs.app.clientID}, {name: "num_response_bytes", kind: 'i', ival: int64(200 + g.intn(40000))}, {name: "product_bucket", value: "GMAIL"}, {name: "app_name", value: gs.app.name}, {name: "client_type", value: "WEB"}}
	}
	net := s.netOf(ip, u.home)
	s.reset()
	s.gwsActivity(&s.w, e.t, g.u64(), app, u, ip, net, typ, name, ps)
	return s.emit(outGWS, e.t, u.email, name)
}

// netOf returns the network holding ip (def when it is def's).
func (s *sim) netOf(ip netip.Addr, def *network) *network {
	if def.entry.Prefix.Contains(ip) {
		return def
	}
	for _, n := range s.t.nets {
		if n.entry.Prefix.Contains(ip) {
			return n
		}
	}
	return def
}

func (gs *gwsStream) messageID(n int) string {
	h := hashKey(gs.s.t.seed, 0x676d, uint64(gs.idx), uint64(n))
	return "<CAKx" + tokenID(idFrom(h))[:18] + "@mail.gmail.com>"
}
