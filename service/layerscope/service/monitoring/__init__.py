"""Live-traffic monitoring: sampling, windows that merge exactly, references and calibrated drift (pure:
no TensorFlow, gRPC or SQL; the store and the request path are handed in)."""
