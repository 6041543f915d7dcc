"""Safe outputs: atomic, locked output directories and files, the marker that says truthprune wrote
them, and the refusal of targets that would replace an input or a system path. Foundation layer:
every layer that writes (the engine's offload saver, reports, plots, the run) uses it."""
