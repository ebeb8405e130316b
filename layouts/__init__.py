"""The page's components. Knows Dash and Plotly, never TensorFlow."""
