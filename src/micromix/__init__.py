"""micromix: memory-driven mixed 2/4/8-bit quantization for microcontrollers."""

__version__ = "0.1.0"
