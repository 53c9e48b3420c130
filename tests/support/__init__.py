"""Builders of tiny real models (GGUF files, Hugging Face folders) shared by tests."""
