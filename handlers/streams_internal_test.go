package handlers

import (
	"math"
	"testing"
)

// TestStreamLimitsDefaults: the subscription bounds follow
// MaxSubscriptions without overflowing, and the server's is never below
// what one stream may follow.
func TestStreamLimitsDefaults(t *testing.T) {
	for _, tc := range []struct {
		in                StreamLimits
		perClient, server int
	}{
		{StreamLimits{}, 8000, 200000},
		{StreamLimits{MaxSubscriptions: 300000}, 300000, 300000},
		{StreamLimits{MaxSubscriptions: math.MaxInt / 4}, math.MaxInt / 4, math.MaxInt / 4},
		{StreamLimits{MaxSubscriptions: 10, Subscriptions: 50}, 50, 50},
		{StreamLimits{MaxSubscriptions: 10, SubscriptionsPerClient: 30}, 30, 200000},
	} {
		got := tc.in.withDefaults()
		if got.SubscriptionsPerClient != tc.perClient || got.Subscriptions != tc.server {
			t.Errorf("%+v: per client %d, server %d; want %d, %d", tc.in, got.SubscriptionsPerClient, got.Subscriptions, tc.perClient, tc.server)
		}
	}
}
