"""TensorFlow process and device set-up: a quiet start, GPU memory shares, device memory readings and the
fused statistics kernel built for the installed TensorFlow."""
