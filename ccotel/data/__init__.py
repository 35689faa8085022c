"""Files shipped with ccotel: the price table and the service templates (no code)."""
