"""Pure functions TensorMap -> TensorMap: name-mapping rules and presets (later issues)."""
