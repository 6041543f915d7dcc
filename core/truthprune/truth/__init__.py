"""True/false statement sets: loading TiU-format CSVs (:mod:`.datasets`) and the offline
generator (:mod:`.generate`)."""
