"""The central fleet page: every device's live figures, availability, open alerts and history.

It subscribes to the central broker, which every device's Mosquitto bridges its topics to, and
serves one page behind the dashboard's login, over HTTPS, with the dashboard's look (docs/fleet.md).
"""
