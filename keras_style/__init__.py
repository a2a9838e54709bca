"""keras-style: neural style transfer in Keras — Gatys optimisation, Johnson fast networks, MetaNets."""

__version__ = "0.1.0"
