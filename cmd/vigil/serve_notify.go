package main

import (
	"strings"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/o365"
	"github.com/vigil-audit/vigil/internal/collect/setup"
	"github.com/vigil-audit/vigil/internal/server"
)

// notifications builds the vendor push endpoints of the server: section,
// each waking the tenant's collectors of that vendor (O365 Management
// Activity content types, or Google Reports applications).
func notifications(cfg *setup.Config, collectors []*collect.Collector) ([]server.Notification, error) {
	if cfg.Server == nil {
		return nil, nil
	}
	var out []server.Notification
	for _, n := range cfg.Server.Notifications {
		secret, err := cfg.NotificationSecret(n)
		if err != nil {
			return nil, err
		}
		var wake []*collect.Collector
		for _, c := range collectors {
			if c.Tenant() != n.Tenant {
				continue
			}
			_, isO365 := o365.ContentTypes[c.Name()]
			if (n.Type == "o365" && isO365) || (n.Type == "google" && strings.HasPrefix(c.Name(), "gws.")) {
				wake = append(wake, c)
			}
		}
		out = append(out, server.Notification{Type: n.Type, Tenant: n.Tenant, Secret: secret, Wake: func() {
			for _, c := range wake {
				c.Wake()
			}
		}})
	}
	return out, nil
}
