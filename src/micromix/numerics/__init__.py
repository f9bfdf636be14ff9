"""The integer numerics every stage shares: quantization parameters (params), the one rounding
and requantization rule with bit packing (arith), and the integer op record (intop). A leaf
package: it imports nothing of micromix but errors and ir, so the op registry, the quantizers,
the integer model and the export can all build on it."""
