"""The subject models: the pretrained base model and TOFU's full and retain fine-tunes. Imports only core."""
