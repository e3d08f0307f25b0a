"""safetensors out: the header we write ourselves and the body as views of tensor memory."""
