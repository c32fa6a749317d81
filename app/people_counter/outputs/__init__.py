"""Where the figures go: MQTT, the SQLite store, annotated frames for the encoder, the results file."""
