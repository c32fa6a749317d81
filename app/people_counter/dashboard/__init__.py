"""The on-device dashboard: live video fan-out, live figures over SSE, history, health, login."""
