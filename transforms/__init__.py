"""Beam building blocks: composite PTransforms and the DoFns inside them."""
