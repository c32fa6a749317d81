"""Home Assistant MQTT discovery: the retained config messages that make a device's figures entities.

Each entity reads its value from the device's retained `state` with a template, and is available
while the device's `available` topic says so (https://www.home-assistant.io/integrations/mqtt/).
The publisher sends these on every (re)connect; with discovery off it sends the same topics with
empty payloads, which removes the entities.
"""

from __future__ import annotations

from dataclasses import dataclass

from people_counter import __version__
from people_counter.config import HomeAssistantConfig
from people_counter.contract import AVAILABLE_OFFLINE, AVAILABLE_ONLINE, DeviceTopics, HaComponent, discovery_topic


@dataclass(frozen=True, slots=True)
class Entity:
    component: HaComponent
    object_id: str
    name: str
    field: str
    """The field of the `state` payload it shows."""
    options: tuple[tuple[str, object], ...] = ()


PEOPLE_NOW = (("state_class", "measurement"), ("unit_of_measurement", "people"))
# The totals go back to 0 at a reset: total_increasing takes a drop as the start of a new cycle.
PEOPLE_SO_FAR = (("state_class", "total_increasing"), ("unit_of_measurement", "people"))
PROBLEM = (("device_class", "problem"),)

ENTITIES = (
    Entity("sensor", "count", "In view", "count", PEOPLE_NOW),
    Entity("sensor", "total", "Total", "total", PEOPLE_SO_FAR),
    Entity("sensor", "in", "In", "in", PEOPLE_SO_FAR),
    Entity("sensor", "out", "Out", "out", PEOPLE_SO_FAR),
    Entity(
        "sensor",
        "avg_duration",
        "Average visit",
        "avg_duration_s",
        (("state_class", "measurement"), ("device_class", "duration"), ("unit_of_measurement", "s")),
    ),
    Entity("binary_sensor", "occupancy_alert", "Occupancy alert", "occupancy_alert", PROBLEM),
    Entity("binary_sensor", "loitering_alert", "Loitering alert", "loitering_alert", PROBLEM),
)


def _value_template(entity: Entity) -> str:
    # Subscripts, not attributes: `in` is a Jinja keyword.
    if entity.component == "binary_sensor":
        return f"{{{{ 'ON' if value_json['{entity.field}'] else 'OFF' }}}}"
    return f"{{{{ value_json['{entity.field}'] }}}}"


def entity_config(entity: Entity, topics: DeviceTopics) -> dict[str, object]:
    """One entity's discovery config, as Home Assistant's MQTT sensor or binary_sensor takes it."""
    device_id = topics.device_id
    return {
        "name": entity.name,
        "unique_id": f"people_counter_{device_id}_{entity.object_id}",
        "state_topic": topics.state,
        "value_template": _value_template(entity),
        "availability_topic": topics.available,
        "payload_available": AVAILABLE_ONLINE,
        "payload_not_available": AVAILABLE_OFFLINE,
        **dict(entity.options),
        "device": {
            "identifiers": [f"people_counter_{device_id}"],
            "name": f"People counter {device_id}",
            "manufacturer": "people-counter",
            "model": "people-counter appliance",
            "sw_version": __version__,
        },
    }


def discovery_messages(cfg: HomeAssistantConfig, topics: DeviceTopics) -> list[tuple[str, dict[str, object] | None]]:
    """Each entity's config topic and its config; None (an empty payload, which removes it) when off."""
    return [
        (
            discovery_topic(cfg.prefix, entity.component, topics.device_id, entity.object_id),
            entity_config(entity, topics) if cfg.enabled else None,
        )
        for entity in ENTITIES
    ]
