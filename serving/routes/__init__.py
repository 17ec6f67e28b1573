"""One router per resource: scores, attainment, the model, health."""
