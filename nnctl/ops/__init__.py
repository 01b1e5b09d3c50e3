"""Pure array kernels shared by layers; each takes its array module from the active backend."""
