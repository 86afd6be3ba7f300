"""Use cases (build, stage, launch, pool upkeep, culling, reconcile); they take their
adapters as arguments."""
