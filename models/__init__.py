"""The scoring models: rule-based grades and stages, the LightGBM conversion model, SHAP explanations."""
