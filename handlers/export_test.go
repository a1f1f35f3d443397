package handlers

// OpenStreams returns the number of change feed streams open now.
func (h *Handler) OpenStreams() int { return h.hub.count() }

// BodyBudgetHeld returns the bytes of the body decode budget held now.
func (h *Handler) BodyBudgetHeld() int64 { return h.bodies.Held() }

// AnswersHeld returns the bytes of the answers' budget held now.
func (h *Handler) AnswersHeld() int64 { return h.answers.Held() }

// AnswersWaiting returns how many wait for room in the answers' budget.
func (h *Handler) AnswersWaiting() int { return h.answers.Waiting() }
