package handlers

// OpenStreams returns the number of change feed streams open now.
func (h *Handler) OpenStreams() int { return h.hub.count() }
