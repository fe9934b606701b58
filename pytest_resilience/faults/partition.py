"""Network partitions, expressed in Toxiproxy terms.

- ``blackhole``: a ``timeout`` toxic with timeout 0 on each cut direction; data
  is dropped and the connection hangs, as a real partition does.  Healing
  removes the toxic, and Toxiproxy then closes the connections it held.
- ``reset``: a ``reset_peer`` toxic with timeout 0; connections fail fast with RST.
- ``refuse``: the proxy is disabled; open connections close, new ones are refused.

``direction`` names what is cut: ``upstream`` (client to service: requests
never arrive), ``downstream`` (service to client: requests are processed and
their answers lost) or ``both``.
"""

from __future__ import annotations

from .. import validate
from ..errors import ConfigurationError
from .plan import FaultPlan, ToxicSpec

DIRECTIONS = {
    "both": ("upstream", "downstream"),
    "upstream": ("upstream",),
    "downstream": ("downstream",),
}
MODES = {"blackhole": ("timeout", "timeout"), "reset": ("reset_peer", "timeout")}


DIRECTION_NAMES = {
    "both": "",
    "upstream": "requests never arrive",
    "downstream": "answers are lost",
}
MODE_NAMES = {
    "blackhole": "data dropped, connections hang",
    "refuse": "connections refused",
    "reset": "connections reset",
}


def plan_partition(direction: str, mode: str, toxicity: float) -> FaultPlan:
    validate.choice(direction, "partition: direction", DIRECTION_NAMES)
    validate.choice(mode, "partition: mode", MODE_NAMES)
    toxicity = validate.toxicity(toxicity, "partition")
    detail = f"direction={direction} mode={mode}"
    if mode == "refuse":
        if direction != "both" or toxicity != 1.0:
            raise ConfigurationError(
                "partition: mode='refuse' stops the listener, which cuts both directions for "
                "every connection; drop direction=/toxicity= or use mode='blackhole'."
            )
        return FaultPlan("partition", disable=True, detail=detail)
    toxic_type, attribute = MODES[mode]
    toxics = tuple(
        ToxicSpec(toxic_type, stream, ((attribute, 0),), toxicity)
        for stream in DIRECTIONS[direction]
    )
    return FaultPlan("partition", toxics, detail=detail)
