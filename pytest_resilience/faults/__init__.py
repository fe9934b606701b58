"""Fault kinds, partitions and the handles that apply and heal them."""

from .fault import Fault
from .kinds import KINDS, plan
from .plan import FaultPlan, ToxicSpec

__all__ = ["KINDS", "Fault", "FaultPlan", "ToxicSpec", "plan"]
