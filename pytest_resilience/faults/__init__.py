"""Fault kinds, partitions and the handles that apply and heal them."""

from .fault import Fault
from .kinds import KINDS, FaultPlan, ToxicSpec, plan

__all__ = ["KINDS", "Fault", "FaultPlan", "ToxicSpec", "plan"]
