"""Request and response models: Pydantic only, never torch, so clients can share them."""
