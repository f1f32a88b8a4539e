"""Planning: the accelerator table and the planner (parameters, FLOPs, memory, layout)."""
