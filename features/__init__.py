"""Pure feature builders: DataFrames in, DataFrames out. No files, no MLflow, no global state."""
