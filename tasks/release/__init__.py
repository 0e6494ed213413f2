"""Release stage: bento packaging, serving check, the gate and promotion."""
