"""People counter: OpenVINO person detection, tracking, counting, MQTT, SQLite and a live view."""

__version__ = "0.1.0"
